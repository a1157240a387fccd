// Bad input. (1) fast-check generates malformed configurations and templates
// (test/support/chaos-fuzz.ts: each one invalid by construction); every one
// goes through the agent's own main() in-process (a worker process calls it
// once per case, as `secrets-agent validate --config ...` would) and must exit
// 2 with a message naming the file, never a stack trace, a throw or a crash; a
// sample goes through the real CLI (validate, init, render). (2) Malformed
// secret payloads from Secrets Manager (invalid JSON where a template needs
// JSON, 64 KiB values, binary) must give a clear error and keep the previous
// files, or be written byte-exact when nothing needs parsing.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { RunningAgent } from '../support/cli.ts';
import { CANARY, Leaks, chaosAgent, chaosRun, cleanEnv, hasStackTrace, readOr, volume, waitUntil } from '../support/chaos-harness.ts';
import { VALID_TEMPLATE, badCase, startFuzzWorker, validDoc, yamlText, type BadCase, type FuzzWorker, type MainResult } from '../support/chaos-fuzz.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { stopAll } from '../support/procs.ts';

const RUNS = Number(process.env.CHAOS_FUZZ_RUNS ?? 1200);
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

describe('bad input', { concurrency: 1 }, () => {
  let root: string;
  const leaks = new Leaks();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sa-chaos-input-'));
  });

  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  let n = 0;
  async function materialize(c: BadCase): Promise<string> {
    const dir = join(root, `case-${n++}`);
    await mkdir(join(dir, 'tpl'), { recursive: true });
    const config = join(dir, 'config.yaml');
    await writeFile(config, c.config);
    for (const [name, text] of Object.entries(c.templates)) {
      await mkdir(dirname(join(dir, name)), { recursive: true });
      await writeFile(join(dir, name), text);
    }
    return config;
  }

  /** Exit 2, at least one error naming the config or template file, nothing else on the way out. */
  function assertRefused(r: Pick<MainResult, 'code' | 'threw' | 'stdout' | 'stderr'>, c: BadCase, config: string): void {
    const what = `${c.kind}\n--- stderr:\n${r.stderr.slice(0, 1500)}`;
    assert.equal(r.threw, undefined, `main() threw: ${r.threw}\n${what}`);
    assert.equal(r.code, 2, `exit ${r.code}, not 2: ${what}`);
    assert.ok(!hasStackTrace(r.stderr + r.stdout), `stack trace: ${what}`);
    assert.doesNotMatch(r.stderr, /unexpected error|"level":"fatal"|unhandled/i, what);
    assert.doesNotMatch(r.stdout, /: ok \(/, what);
    const errors = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: string; msg: string })
      .filter((l) => l.level === 'error');
    assert.ok(errors.length > 0, `no error message: ${what}`);
    const dir = dirname(config);
    assert.ok(
      errors.some((e) => e.msg.includes(config) || e.msg.includes(join(dir, 'tpl'))),
      `no message names the config or template file: ${what}`,
    );
    // Short, human messages, not dumps: a long value of an unknown key must not be echoed whole.
    for (const e of errors) assert.ok(e.msg.length < 2000, `a ${e.msg.length}-character message: ${c.kind}`);
  }

  describe('malformed configurations and templates (fast-check)', () => {
    let worker: FuzzWorker;
    before(async () => {
      worker = await startFuzzWorker(cleanEnv());
    });
    after(() => worker?.close());

    it('when the configuration is valid, validate accepts it (the base every mutation starts from)', async () => {
      const config = await materialize({ kind: 'valid', families: [], config: yamlText(validDoc()), templates: { 'tpl/app.liquid': VALID_TEMPLATE } });
      const r = await worker.call(['validate', '--config', config]);
      assert.equal(r.code, 0, r.stderr);
      const json = await materialize({ kind: 'valid json', families: [], config: JSON.stringify(validDoc()), templates: { 'tpl/app.liquid': VALID_TEMPLATE } });
      assert.equal((await worker.call(['validate', '--config', json])).code, 0);
    });

    it(`when ${RUNS} generated configs and templates are malformed, every one exits 2 with a message, never a stack trace or a crash`, async () => {
      const kinds = new Map<string, number>();
      let slowest = 0;
      const t0 = Date.now();
      await fc.assert(
        fc.asyncProperty(badCase, async (c) => {
          const config = await materialize(c);
          const t = Date.now();
          const r = await worker.call(['validate', '--config', config]);
          slowest = Math.max(slowest, Date.now() - t);
          assertRefused(r, c, config);
          for (const f of c.families) kinds.set(f, (kinds.get(f) ?? 0) + 1);
          await rm(dirname(config), { recursive: true, force: true });
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: true },
      );
      process.stdout.write(
        `# fuzz: ${RUNS} malformed configs/templates (seed ${SEED}) -> exit 2 with a message every time, 0 stack traces, 0 crashes, in ${Math.round((Date.now() - t0) / 1000)} s (slowest ${slowest} ms); ` +
          `cases per generator: ${[...kinds].map(([k, v]) => `${k} ${v}`).join(', ')}\n`,
      );
    });

    it('when a sample of them goes through the real CLI (validate, init, render), each exits 2 the same way', async () => {
      const sample = fc.sample(badCase, { numRuns: 20, seed: SEED + 1 });
      const commands = (config: string, i: number): string[] =>
        i % 4 === 1 ? ['init', '--config', config, '--timeout', '5s'] : i % 4 === 3 ? ['render', '--config', config, '--output-dir', join(dirname(config), 'rendered')] : ['validate', '--config', config];
      const results: string[] = [];
      for (let i = 0; i < sample.length; i += 2) {
        await Promise.all(
          sample.slice(i, i + 2).map(async (c, j) => {
            const config = await materialize(c);
            const args = commands(config, i + j);
            const r = await chaosRun(`cli ${c.kind}`, args, leaks, { env: cleanEnv(), timeoutMs: 30_000 });
            assertRefused({ code: r.code ?? undefined, threw: r.signal ? `signal ${r.signal}` : undefined, stdout: r.stdout, stderr: r.stderr }, c, config);
            // Nothing may have been written for an invalid config.
            assert.equal(await readOr(join(dirname(config), 'rendered', '..data'), 'absent'), 'absent');
            results.push(args[0]!);
          }),
        );
      }
      process.stdout.write(`# fuzz: ${results.length} real CLI runs (${results.filter((c) => c === 'validate').length} validate, ${results.filter((c) => c === 'init').length} init, ${results.filter((c) => c === 'render').length} render) -> exit 2\n`);
    });
  });

  describe('malformed secret payloads', () => {
    let moto: Moto;
    let env: NodeJS.ProcessEnv;
    const agents: RunningAgent[] = [];
    let config: string;
    let out: string;
    const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 10, 13, ...Buffer.from(CANARY)]);

    before(async () => {
      moto = await startMoto();
      await writeFile(join(root, 'token'), 'eyJhbGciOiJSUzI1NiJ9.payload-token.sig');
      env = agentEnv(moto, join(root, 'token'));
      await moto.sm('CreateSecret', { Name: 'payload/db', SecretString: JSON.stringify({ password: `pw-${CANARY}` }) });
      await moto.sm('CreateSecret', { Name: 'payload/raw', SecretString: `raw-${CANARY}` });
      await moto.sm('CreateSecret', { Name: 'payload/bin', SecretBinary: binary.toString('base64') });
      out = join(root, 'payload-out');
      config = join(root, 'payload.yaml');
      await writeFile(
        config,
        `source: { region: us-east-1 }
outputDir: ${out}
refresh: { interval: 300ms, jitter: 0.1, rotationAware: false }
secrets:
  db: { id: payload/db }
  raw: { id: payload/raw }
  bin: { id: payload/bin }
files:
  - path: password
    template: "{{ secrets.db.password }}"
  - path: raw
    secret: raw
  - path: bin
    secret: bin
server: { listen: "" }
`,
      );
    });

    after(async () => {
      await stopAll(agents);
      await moto?.stop();
    });

    const init = () => chaosRun('payload init', ['init', '--config', config, '--timeout', '5s', '--log-level', 'debug'], leaks, { env });
    const put = (id: string, body: Record<string, unknown>) => moto.sm('PutSecretValue', { SecretId: `payload/${id}`, ...body });

    it('when a payload needs no parsing (64 KiB text, binary, 64 KiB binary), it is written byte-exact', async () => {
      const r = await init();
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await readFile(join(out, 'bin')), binary);
      const big = `${CANARY}${'x'.repeat(65_536 - CANARY.length)}`;
      await put('raw', { SecretString: big });
      const bigBin = Buffer.alloc(65_536, 0xff);
      binary.copy(bigBin, 1000);
      await put('bin', { SecretBinary: bigBin.toString('base64') });
      const r2 = await init();
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(await readFile(join(out, 'raw'), 'utf8'), big);
      assert.deepEqual(await readFile(join(out, 'bin')), bigBin);
    });

    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['invalid JSON where the template needs JSON', { SecretString: `{"password": "pw2-${CANARY}", ${CANARY}` }, /not valid JSON/],
      ['64 KiB of invalid JSON', { SecretString: `{"password": "${CANARY}${'y'.repeat(65_000)}" ${CANARY}` }, /not valid JSON/],
      ['a JSON array, not an object', { SecretString: JSON.stringify([`${CANARY}`]) }, /not a JSON object|undefined variable/],
      ['binary where the template needs JSON', { SecretBinary: Buffer.from(`{"password":"${CANARY}"}`).toString('base64') }, /binary|undefined variable/],
      ['a JSON object without the field', { SecretString: JSON.stringify({ pass: `${CANARY}` }) }, /undefined variable/],
      ['JSON nested 10,000 deep', { SecretString: `${'{"a":'.repeat(10_000)}"${CANARY}"${'}'.repeat(10_000)}` }, /undefined variable/],
    ];

    for (const [what, body, message] of cases) {
      it(`when the value is ${what}, init exits 1 with a clear error and keeps the previous files`, async () => {
        await put('db', { SecretString: JSON.stringify({ password: `pw-${CANARY}` }) });
        assert.equal((await init()).code, 0);
        const before = await volume(out);
        await put('db', body);
        const r = await init();
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /\\"password\\"|password/, 'the error names the file');
        assert.match(r.stderr, message);
        assert.ok(!hasStackTrace(r.stderr));
        assert.doesNotMatch(r.stderr, /unexpected error|"level":"fatal"/);
        const now = await volume(out);
        assert.equal(now.data, before.data, '..data moved');
        assert.deepEqual(now.files, before.files, 'the previous files changed');
      });
    }

    it('when the sidecar gets a malformed payload, that file keeps its bytes, the others still refresh, and it recovers', async () => {
      await put('db', { SecretString: JSON.stringify({ password: `pw-${CANARY}` }) });
      const agent = chaosAgent('payload run', ['run', '--config', config, '--log-level', 'debug'], leaks, { env });
      agents.push(agent);
      await agent.waitFor(/first render complete/, 20_000);
      const password = await readFile(join(out, 'password'), 'utf8');
      await put('db', { SecretString: `{"password": "bad-${CANARY}"` });
      await put('raw', { SecretString: `raw2-${CANARY}` });
      await waitUntil('the other file refreshed', async () => (await readOr(join(out, 'raw'))) === `raw2-${CANARY}`, 10_000);
      // The render error is logged once the commit (which wrote raw) returns.
      await agent.waitFor(/not valid JSON/, 10_000);
      assert.equal(await readFile(join(out, 'password'), 'utf8'), password, 'the file of the malformed secret changed');
      await put('db', { SecretString: JSON.stringify({ password: `pw3-${CANARY}` }) });
      await waitUntil('recovery', async () => (await readOr(join(out, 'password'))) === `pw3-${CANARY}`, 10_000);
      const data = await readlink(join(out, '..data'));
      assert.ok(data.startsWith('..'));
      agent.child.kill('SIGTERM');
      assert.equal((await agent.exited).code, 0);
      assert.doesNotMatch(agent.output().stderr, /unhandled|"level":"fatal"/i);
    });
  });

  it('when the suite is done, no secret value appeared in any output', () => {
    leaks.assertClean('bad input');
  });
});
