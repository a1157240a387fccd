// Operator mistakes through the real CLI: a --timeout beyond what a timer
// holds, a listen port already taken, a listen host that does not resolve, no
// AWS region, an empty SECRETS_AGENT_CONFIG, a JSON secret nested absurdly deep.
// Each is one clear line (what, where, how to fix), never a stack trace or an
// "unexpected error", with the documented exit code; a secret value never shows.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, type RunResult } from '../support/cli.ts';
import { hasStackTrace } from '../support/chaos-harness.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';

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

    for (const command of ['validate', 'init', 'run']) {
      it(`when the config file is missing or a directory, ${command} exits 2 with one plain error: line (no JSON, no empty key)`, async () => {
        const missing = join(dir, 'no-such-config.yaml');
        let r = await runAgent([command, '--config', missing], { env: envWithoutAws(), timeoutMs: 30_000 });
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr, `error: ${missing}: file not found (set --config or SECRETS_AGENT_CONFIG to the configuration file)\n`);
        assert.equal(r.stdout, '');
        r = await runAgent([command], { env: envWithoutAws({ SECRETS_AGENT_CONFIG: dir }), timeoutMs: 30_000 });
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr, `error: ${dir}: is a directory; expected a YAML or JSON file\n`);
      });
    }

    it('--listen is refused for the commands that serve nothing (init, validate)', async () => {
      for (const command of ['init', 'validate']) {
        const r = await runAgent([command, '--listen', '127.0.0.1:0', '--config', join(dir, 'x.yaml')], { env: envWithoutAws() });
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr, `error: --listen is for run (the sidecar's /metrics, /healthz and /readyz), not ${command}\n`);
      }
    });

    it('when --config is empty, validate exits 2 saying so', async () => {
      const r = await runAgent(['validate', '--config', ''], { env: envWithoutAws() });

      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, "error: --config is empty; give the config file's path, or leave --config out\n");
    });
  });

  describe('a JSON secret nested absurdly deep', () => {
    // ~60 KB: within Secrets Manager's 64 KiB limit.
    const DEPTH = 30_000;
    const deepObject = `{"user":"u-${CANARY}","a":${'['.repeat(DEPTH)}"${CANARY}"${']'.repeat(DEPTH)}}`;
    const deepArray = `${'['.repeat(DEPTH)}"${CANARY}"${']'.repeat(DEPTH)}`;
    const files = `  - path: user\n    template: "{{ secrets.db.user }}"\n  - path: field\n    secret: db\n    key: a\n  - path: whole\n    template: "{{ secrets.db | json }}"\n`;
    const deepMessage = /secret \\"db\\" is JSON nested more than 1000 levels deep \(too deep to read\)/;

    const assertDeepRejected = (r: RunResult): void => {
      assert.equal(r.code, 1, r.stderr);
      assert.ok(!hasStackTrace(r.stderr), r.stderr);
      assert.doesNotMatch(r.stderr, /unexpected|RangeError|a bug|"level":"fatal"/);
      assert.doesNotMatch(r.stderr + r.stdout, new RegExp(CANARY));
      const errors = records(r.stderr).filter((rec) => rec.level === 'error' && typeof rec.file === 'string');
      // The files that read into it fail, each with its own precise message; \`whole\` gets the
      // secret as a string (as for any JSON too deep or invalid), not a stack overflow.
      assert.deepEqual(errors.map((e) => e.file).sort(), ['field', 'user'], r.stderr);
      assert.match(r.stderr, deepMessage);
    };

    it('when the file source holds it, init exits 1 naming the secret and the depth, never the value', async () => {
      const path = join(dir, 'deep-secrets.yaml');
      await writeFile(path, `db: ${JSON.stringify(deepObject)}\n`);
      const config = join(dir, 'deep.yaml');
      await writeFile(config, `source: {type: file, path: ${path}}\noutputDir: ${join(dir, 'deep-out')}\nsecrets:\n  db: {id: db}\nfiles:\n${files}`);
      const r = await runAgent(['init', '--config', config, '--log-level', 'debug'], { env: envWithoutAws() });

      assertDeepRejected(r);
    });

    describe('from Secrets Manager (moto)', () => {
      let moto: Moto;
      let env: NodeJS.ProcessEnv;

      before(async () => {
        moto = await startMoto();
        const token = join(dir, 'token');
        await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.operr-token.sig');
        env = agentEnv(moto, token);
        await moto.sm('CreateSecret', { Name: 'deep/object', SecretString: deepObject });
        await moto.sm('CreateSecret', { Name: 'deep/array', SecretString: deepArray });
      });

      after(async () => {
        await moto?.stop();
      });

      it('when the secret is a JSON object nested 30,000 deep, init exits 1 naming the secret and the depth, never the value', async () => {
        const config = join(dir, 'deep-moto.yaml');
        await writeFile(config, `source: {region: us-east-1}\noutputDir: ${join(dir, 'deep-moto-out')}\nsecrets:\n  db: {id: deep/object}\nfiles:\n${files}`);
        const r = await runAgent(['init', '--config', config, '--log-level', 'debug', '--timeout', '20s'], { env });

        assertDeepRejected(r);
      });

      it('when the secret is a JSON array nested 30,000 deep, it is a plain string: written as is, and key: says it is not a JSON object', async () => {
        const out = join(dir, 'deep-array-out');
        const config = join(dir, 'deep-array.yaml');
        await writeFile(config, `source: {region: us-east-1}\noutputDir: ${out}\nsecrets:\n  db: {id: deep/array}\nfiles:\n  - path: raw\n    secret: db\n`);
        const ok = await runAgent(['init', '--config', config, '--timeout', '20s'], { env });
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal(await readFile(join(out, 'raw'), 'utf8'), deepArray);

        await writeFile(config, `source: {region: us-east-1}\noutputDir: ${out}\nsecrets:\n  db: {id: deep/array}\nfiles:\n  - path: raw\n    secret: db\n    key: a\n`);
        const r = await runAgent(['init', '--config', config, '--log-level', 'debug', '--timeout', '20s'], { env });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /secret \\"db\\" is not a JSON object, so key \\"a\\" cannot be read/);
        assert.doesNotMatch(r.stderr + r.stdout, new RegExp(CANARY));
        assert.ok(!hasStackTrace(r.stderr), r.stderr);
      });
    });
  });
});
