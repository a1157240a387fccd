// Operator mistakes through the real CLI: a --timeout beyond what a timer
// holds, a listen port already taken, a listen host that does not resolve, no
// AWS region, an empty SECRETS_AGENT_CONFIG.
// Each is one clear line (what, where, how to fix), never a stack trace or an
// "unexpected error", with the documented exit code; a secret value never shows.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, type RunResult } from './support/cli.ts';
import { hasStackTrace } from './support/chaos-harness.ts';

const CANARY = 'CANARY-operr-4b8e21d6';

/** The process environment without AWS settings (no region, no endpoint). */
function envWithoutAws(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && k !== 'SECRETS_AGENT_CONFIG' && k !== 'NODE_OPTIONS' && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  }
  return { ...env, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true', ...extra };
}

/** The JSON log records of `stderr` (fails on a line that is not JSON). */
function records(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        assert.fail(`not a JSON log line: ${l}`);
      }
    });
}

/** Exit 2, exactly one error record matching `message`, no stack, no "unexpected". */
function assertOperatorError(r: RunResult, message: RegExp, key: string): void {
  assert.equal(r.code, 2, r.stderr);
  assert.ok(!hasStackTrace(r.stderr), r.stderr);
  assert.doesNotMatch(r.stderr, /unexpected|"level":"fatal"|Warning/i);
  const errors = records(r.stderr).filter((rec) => rec.level === 'error');
  assert.equal(errors.length, 1, r.stderr);
  assert.equal(errors[0]?.key, key, r.stderr);
  assert.match(String(errors[0]?.msg), message);
}

describe('operator errors (real CLI)', () => {
  let dir: string;
  let secrets: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-operr-'));
    secrets = join(dir, 'secrets.yaml');
    await writeFile(secrets, `db: '{"user":"u-${CANARY}"}'\n`);
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const fileConfig = async (name: string, extra: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(
      path,
      `source: {type: file, path: ${secrets}}
outputDir: ${join(dir, `${name}-out`)}
secrets:
  db: {id: db}
files:
  - path: user
    template: "{{ secrets.db.user }}"
${extra}`,
    );
    return path;
  };

  describe('init --timeout', () => {
    for (const timeout of ['597h', '99999h', '169h']) {
      it(`when --timeout is ${timeout} (beyond 168h), init exits 2 saying the bound, before doing anything`, async () => {
        const config = await fileConfig(`timeout-${timeout}.yaml`, '');
        const r = await runAgent(['init', '--config', config, '--timeout', timeout], { env: envWithoutAws() });

        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr, `error: --timeout "${timeout}" is too long (at most 168h; e.g. "2m")\n`);
        await assert.rejects(readFile(join(dir, `timeout-${timeout}.yaml-out`, 'user')), { code: 'ENOENT' });
      });
    }

    it('when --timeout is 168h, the bound itself, init runs', async () => {
      const config = await fileConfig('timeout-ok.yaml', '');
      const r = await runAgent(['init', '--config', config, '--timeout', '168h'], { env: envWithoutAws() });

      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /Warning/);
      assert.equal(await readFile(join(dir, 'timeout-ok.yaml-out', 'user'), 'utf8'), `u-${CANARY}`);
    });
  });

  describe('run: server.listen', () => {
    let busy: Server;
    let busyPort: number;

    before(async () => {
      busy = createServer();
      await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
      busyPort = (busy.address() as { port: number }).port;
    });

    after(async () => {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    });

    it('when the listen port is already in use, run exits 2 with one line naming server.listen and the fix', async () => {
      const config = await fileConfig('busy.yaml', `server: {listen: "127.0.0.1:${busyPort}"}\n`);
      const r = await runAgent(['run', '--config', config], { env: envWithoutAws(), timeoutMs: 30_000 });

      assertOperatorError(r, new RegExp(`^cannot listen on server\\.listen "127\\.0\\.0\\.1:${busyPort}": the address is already in use .*; set server\\.listen to a free "host:port", or "" to disable the server$`), 'server.listen');
      assert.doesNotMatch(r.stderr + r.stdout, new RegExp(CANARY));
    });

    it('when the listen host does not resolve, run exits 2 with one line naming the host and the fix', async () => {
      const config = await fileConfig('host.yaml', 'server: {listen: "no-such-host.invalid:9102"}\n');
      const r = await runAgent(['run', '--config', config], { env: envWithoutAws(), timeoutMs: 30_000 });

      assertOperatorError(r, /^cannot listen on server\.listen "no-such-host\.invalid:9102": the host "no-such-host\.invalid" does not resolve \(E[A-Z_]+\); set server\.listen to an IP address/, 'server.listen');
    });
  });

  describe('no AWS region', () => {
    const awsConfig = async (): Promise<string> => {
      const path = join(dir, 'aws.yaml');
      await writeFile(path, `outputDir: ${join(dir, 'aws-out')}\nsecrets:\n  db: {id: app/db}\nfiles:\n  - path: db\n    secret: db\nserver: {listen: "127.0.0.1:0"}\n`);
      return path;
    };
    for (const command of ['init', 'run']) {
      it(`when no region is configured or in the environment, ${command} exits 2 with one line naming source.region and AWS_REGION`, async () => {
        const r = await runAgent([command, '--config', await awsConfig()], { env: envWithoutAws(), timeoutMs: 30_000 });

        assertOperatorError(r, /^no AWS region .*; set source\.region in the config, or AWS_REGION in the container environment$/, 'source.region');
      });
    }
  });

  describe('SECRETS_AGENT_CONFIG', () => {
    for (const command of ['validate', 'init', 'run']) {
      it(`when SECRETS_AGENT_CONFIG is set but empty, ${command} exits 2 saying so (not ": file not found")`, async () => {
        const r = await runAgent([command], { env: envWithoutAws({ SECRETS_AGENT_CONFIG: '' }), timeoutMs: 30_000 });

        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr, "error: SECRETS_AGENT_CONFIG is set but empty; set it to the config file's path, or unset it to use /etc/secrets-agent/config.yaml\n");
      });
    }

    it('when --config is empty, validate exits 2 saying so', async () => {
      const r = await runAgent(['validate', '--config', ''], { env: envWithoutAws() });

      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, "error: --config is empty; give the config file's path, or leave --config out\n");
    });
  });
});
