// Every command answers --help and -h with its usage, flags and an example; the
// example runs; every flag the help lists is one the command's parser accepts;
// a mistyped flag is answered with the nearest one. The real CLI (agent/main.ts).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COMMANDS } from '../../agent/cli/help.ts';
import { runAgent } from '../support/cli.ts';

const env = { ...process.env, SECRETS_AGENT_CONFIG: '/nonexistent/config.yaml' };
/** Arguments that come before the flags (convert's subcommand). */
const lead = (command: string): string[] => (command === 'convert' ? [command, 'eso'] : [command]);

describe('per-command help', () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'sa-help-'))));
  after(() => rm(dir, { recursive: true, force: true }));

  for (const [command, help] of Object.entries(COMMANDS)) {
    it(`${command} --help, -h and help ${command} print its usage, flags and an example, exit 0`, async () => {
      for (const args of [[...lead(command), '--help'], [command, '-h'], ['help', command]]) {
        const r = await runAgent(args, { env });
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        assert.equal(r.stderr, '');
        assert.ok(r.stdout.startsWith(`Usage: secrets-agent ${command}`), r.stdout);
        for (const [flag] of help.flags) assert.ok(r.stdout.includes(flag), `${args.join(' ')} lists ${flag}`);
        assert.match(r.stdout, /\nExample:\n {2}secrets-agent /);
      }
    });

    it(`${command}: every flag its help lists is accepted, a misspelled one gets "did you mean"`, async () => {
      for (const [flag] of help.flags) {
        const name = flag.split(' ')[0]!;
        const r = await runAgent([...lead(command), name, join(dir, 'x')], { env });
        assert.doesNotMatch(r.stderr, /unknown flag/, `${command} ${name}`);
        const typo = name.slice(0, -2) + name.at(-1) + name.at(-2);
        const t = await runAgent([...lead(command), typo, 'x'], { env });
        assert.equal(t.code, 2, t.stderr);
        assert.equal(t.stderr, `error: unknown flag ${typo} for ${command}; did you mean ${name}?\nRun "secrets-agent ${command} --help" for its flags.\n`);
      }
    });
  }

  it('the examples of the offline commands run from a checkout (validate, convert, inject, version)', async () => {
    for (const command of ['validate', 'convert', 'inject', 'version']) {
      for (const example of COMMANDS[command]!.examples) {
        const args = example.replace(/ > \S+$/, '').split(' ').slice(1);
        const r = await runAgent(args);
        assert.equal(r.code, 0, `${example}: ${r.stderr}`);
        assert.ok(r.stdout.length > 0, example);
      }
    }
  });
});
