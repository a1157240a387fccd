// The environment of an `exec` notify command, seen by a real child: the real
// `run` (file source, no AWS needed) started with every AWS credential variable
// set to a canary, a secrets-file edit, and a command that prints its whole
// environment (`env`). The command must not get the agent's AWS identity; what
// the target's `env:` names it does get.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAgent } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const CANARY = 'CANARY-notify-env-5d2c90';

// The documented list (docs/notify.md), spelled out here so that a name
// dropped from the code fails this test.
const CREDENTIALS = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_SECURITY_TOKEN',
  'AWS_CREDENTIAL_EXPIRATION',
  'AWS_ROLE_ARN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ROLE_SESSION_NAME',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  'AWS_PROFILE',
  'AWS_DEFAULT_PROFILE',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
];

/** `env` output as a map (values have no newlines here). */
function parseEnv(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

describe('exec notify environment', () => {
  let dir: string;
  let agent: RunningAgent;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-notify-env-'));
    await writeFile(join(dir, 'secrets.yaml'), 'db: "v1"\n');
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 200ms }
secrets:
  db: { id: db }
files:
  - path: db
    secret: db
notify:
  - name: plain
    exec: ["/bin/sh", "-c", "env > ${join(dir, 'plain.env')}"]
  - name: chosen
    exec: ["/bin/sh", "-c", "env > ${join(dir, 'chosen.env')}"]
    env:
      AWS_PROFILE: reloader
      AWS_ROLE_ARN: arn:aws:iam::123456789012:role/reloader
      RELOAD_MODE: graceful
server: { listen: "" }
`,
    );
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_REGION: 'eu-west-1' };
    for (const name of CREDENTIALS) env[name] = `${CANARY}-${name}`;
    agent = startAgent(['run', '--config', join(dir, 'config.yaml')], { env });
    await agent.waitFor(/first render complete/);
    await writeFile(join(dir, 'secrets.yaml'), 'db: "v2"\n');
    await waitUntil('both commands ran', async () => (await readOr(join(dir, 'plain.env'))) !== '' && (await readOr(join(dir, 'chosen.env'))) !== '');
    await waitUntil('the chosen command finished writing', async () => (await readOr(join(dir, 'chosen.env'))).includes('RELOAD_MODE='));
  });

  after(async () => {
    await stopAgent(agent);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gets none of the agent\'s AWS credential variables, and keeps the rest of its environment', async () => {
    const text = await readOr(join(dir, 'plain.env'));
    const env = parseEnv(text);
    for (const name of CREDENTIALS) assert.equal(env.get(name), undefined, `${name} reached the command`);
    assert.ok(!text.includes(CANARY), 'no credential value reached the command');
    assert.equal(env.get('AWS_REGION'), 'eu-west-1', 'the region is not a credential: it stays');
    assert.equal(env.get('PATH'), process.env['PATH']);
    assert.equal(env.get('SECRETS_AGENT_CHANGED_FILES'), 'db');
  });

  it('gets exactly what its env: sets, and still no other credential variable', async () => {
    const text = await readOr(join(dir, 'chosen.env'));
    const env = parseEnv(text);
    assert.equal(env.get('AWS_PROFILE'), 'reloader');
    assert.equal(env.get('AWS_ROLE_ARN'), 'arn:aws:iam::123456789012:role/reloader');
    assert.equal(env.get('RELOAD_MODE'), 'graceful');
    for (const name of CREDENTIALS.filter((n) => n !== 'AWS_PROFILE' && n !== 'AWS_ROLE_ARN')) assert.equal(env.get(name), undefined, `${name} reached the command`);
    assert.ok(!text.includes(CANARY));
  });

  it('the agent\'s log names no credential value', () => {
    const { stdout, stderr } = agent.output();
    assert.ok(!(stdout + stderr).includes(CANARY));
  });
});
