// Secret leakage: every secret holds the canary; the agent runs at trace level
// (JSON and text logs) through success, every kind of render error, source
// errors, a garbled AWS answer that holds the value, config reloads, endpoint
// calls before and after ready, and shutdown. Nothing it prints or serves may
// contain the canary. (Every other chaos suite ends with the same scan of its
// own outputs.)
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../support/cli.ts';
import { CANARY, Leaks, chaosAgent, chaosRun, get, hasStackTrace, listenAddress, readOr, waitUntil } from '../support/chaos-harness.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { stopAll } from '../support/procs.ts';

// The canary at the start, in the middle and at the end of values, repeated, so
// that even a short quoted window of a value holds a telling part of it.
const V = (tag: string) => `${CANARY}${tag}${CANARY}`;

describe('secret leakage: the canary never leaves the agent', { concurrency: 1 }, () => {
  let moto: Moto;
  let proxy: Proxy;
  let root: string;
  let env: NodeJS.ProcessEnv;
  const leaks = new Leaks();
  const agents: RunningAgent[] = [];
  let runs = 0;

  before(async () => {
    moto = await startMoto();
    proxy = await startProxy(moto.url);
    root = await mkdtemp(join(tmpdir(), 'sa-chaos-leak-'));
    await writeFile(join(root, 'token'), 'eyJhbGciOiJSUzI1NiJ9.leak-token.sig');
    env = agentEnv({ url: proxy.url } as Moto, join(root, 'token'));
    const create = (name: string, body: Record<string, unknown>) => moto.sm('CreateSecret', { Name: `leak/${name}`, ...body });
    await create('db', { SecretString: JSON.stringify({ username: 'app', password: V('pw'), host: 'db.internal', nested: { token: V('nested') } }) });
    await create('api', { SecretString: V('api') });
    await create('bin', { SecretBinary: Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0x80]), Buffer.from(V('bin'))]).toString('base64') });
    await create('badjson', { SecretString: `{"password": "${V('bad')}", ${CANARY} }` });
    await create('big', { SecretString: JSON.stringify({ blob: `${CANARY}`.repeat(2800) }) });
    await create('b64', { SecretString: Buffer.from(V('b64')).toString('base64') });
  });

  after(async () => {
    await stopAll(agents);
    await proxy?.close();
    await moto?.stop();
    if (root) await rm(root, { recursive: true, force: true });
    process.stdout.write(`# leakage: ${runs} agent runs at trace level, plus every endpoint body\n`);
  });

  const secretsBlock = `secrets:
  db: { id: leak/db }
  api: { id: leak/api }
  bin: { id: leak/bin }
  badjson: { id: leak/badjson }
  big: { id: leak/big }
  b64: { id: leak/b64 }`;

  const goodFiles = `  - path: db.env
    template: "USER={{ secrets.db.username }}\\nPASSWORD={{ secrets.db.password | dotenv }}\\nTOKEN={{ secrets.db.nested.token | shell }}\\n"
  - path: api
    secret: api
  - path: bin
    secret: bin
  - path: all.json
    template: "{{ secrets | json }}{{ raw | json }}{{ meta | json }}"
  - path: big
    secret: big
    key: blob
  - path: decoded
    template: "{{ raw.b64 | base64_decode | sha256 }}{{ raw.badjson | base64_encode }}"`;

  /** One file per way a render can fail while touching a value. */
  const failingFiles = `  - path: e1
    template: "{{ secrets.badjson.password }}"
  - path: e2
    template: "{{ secrets.api.field }}"
  - path: e3
    secret: bin
    key: x
  - path: e4
    secret: badjson
    key: password
  - path: e5
    template: "{{ raw.api | base64_decode }}"
  - path: e6
    template: "{{ raw.bin | base64_decode }}"
  - path: e7
    template: "{{ raw.api | env_name }}"
  - path: e8
    template: "{{ secrets.db | env_entries }}{{ secrets.api | entries }}"
  - path: e9
    template: "{{ secrets[raw.api] }}"
  - path: e10
    template: "{% assign k = secrets.db.password %}{{ secrets.db[k] }}"
  - path: e11
    template: "{{ secrets.db.nested[secrets.db.password].x }}"
  - path: e12
    template: "{% for i in (1..1000000000) %}{{ raw.api }}{% endfor %}"`;

  async function write(name: string, files: string, extra = ''): Promise<{ dir: string; out: string; config: string }> {
    const dir = join(root, name);
    const out = join(dir, 'out');
    await mkdir(dir, { recursive: true });
    const config = join(dir, 'config.yaml');
    await writeFile(config, `source: { region: us-east-1 }\noutputDir: ${out}\n${secretsBlock}\nfiles:\n${files}\n${extra}`);
    return { dir, out, config };
  }

  async function cli(label: string, args: string[]) {
    runs++;
    const r = await chaosRun(label, args, leaks, { env });
    assert.ok(!hasStackTrace(r.stdout + r.stderr), `${label}: stack trace`);
    return r;
  }

  it('when init, render and validate succeed at trace level (JSON and text logs), no value is printed', async () => {
    const c = await write('ok', goodFiles);
    for (const fmt of ['json', 'text']) {
      const r = await cli(`init ${fmt}`, ['init', '--config', c.config, '--log-level', 'trace', '--log-format', fmt]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.ok((await readOr(join(c.out, 'db.env'))).includes(CANARY), 'the files themselves do hold the values');
    const r = await cli('render', ['render', '--config', c.config, '--output-dir', join(c.dir, 'rendered'), '--log-level', 'trace']);
    assert.equal(r.code, 0, r.stderr);
    const v = await cli('validate', ['validate', '--config', c.config, '--log-level', 'trace']);
    assert.equal(v.code, 0, v.stderr);
  });

  it('when every file fails to render in its own way, the errors name files, lines and secrets, never values', async () => {
    const c = await write('render-errors', failingFiles, 'server: { listen: "127.0.0.1:0" }');
    for (const fmt of ['json', 'text']) {
      const r = await cli(`init render errors ${fmt}`, ['init', '--config', c.config, '--log-level', 'trace', '--log-format', fmt, '--timeout', '10s']);
      assert.equal(r.code, 1, r.stderr);
      for (let i = 1; i <= 12; i++) assert.match(r.stderr, new RegExp(`e${i}\\b`), `the error for e${i} names the file`);
    }
    // The sidecar: the strict first render fails -> not ready; /readyz says why.
    const restarted = chaosAgent('run render errors', ['run', '--config', c.config, '--log-level', 'trace'], leaks, { env });
    agents.push(restarted);
    runs++;
    const base = await listenAddress(restarted);
    await restarted.waitFor(/first render not complete/, 15_000);
    const ready = await get(`${base}/readyz`, leaks);
    assert.equal(ready.status, 503);
    for (const p of ['/healthz', '/metrics', '/nope', '/readyz?verbose=1']) await get(`${base}${p}`, leaks);
    restarted.child.kill('SIGTERM');
    assert.equal((await restarted.exited).code, 0);
  });

  it('when the sidecar runs, rotates, reloads its config and stops at trace level, nothing leaks from logs or endpoints', async () => {
    const c = await write('run', goodFiles + '\n' + failingFiles.split('\n').slice(0, 2).join('\n').replace('e1', 'late-error'), 'refresh: { interval: 300ms, rotationAware: false }\nserver: { listen: "127.0.0.1:0" }');
    // late-error fails from the start: make it valid first, break it by rotation later.
    await writeFile(c.config, (await readOr(c.config)).replace('{{ secrets.badjson.password }}', '{{ secrets.db.password }}'));
    const agent = chaosAgent('run', ['run', '--config', c.config, '--log-level', 'trace'], leaks, { env });
    agents.push(agent);
    runs++;
    const base = await listenAddress(agent);
    await agent.waitFor(/first render complete/, 20_000);
    for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal((await get(`${base}${p}`, leaks)).status, 200);
    // A rotation to invalid JSON: the file keeps its bytes, the error names it.
    await moto.sm('PutSecretValue', { SecretId: 'leak/db', SecretString: `{"password": "${V('rot')}" ${CANARY}` });
    await waitUntil('the render error after rotation', () => /late-error|db\.env/.test(agent.output().stderr.split('new secret version').slice(1).join('')), 10_000);
    await moto.sm('PutSecretValue', { SecretId: 'leak/db', SecretString: JSON.stringify({ username: 'app', password: V('pw2'), nested: { token: V('n2') } }) });
    await waitUntil('the fixed value', async () => (await readOr(join(c.out, 'db.env'))).includes('pw2'), 10_000);
    // A live config edit, valid then invalid.
    const text = await readOr(c.config);
    await writeFile(c.config, text.replace('USER=', 'USERNAME='));
    await agent.waitFor(/config reloaded/, 10_000);
    await writeFile(c.config, text.replace('{{ secrets.db.username }}', '{{ secrets.db.username | nofilter }}'));
    await agent.waitFor(/config change rejected/, 10_000);
    for (const p of ['/healthz', '/readyz', '/metrics']) await get(`${base}${p}`, leaks);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('when Secrets Manager answers garbled JSON that holds the value, init retries until --timeout, exits 1 and never quotes it', async () => {
    const c = await write('garbled', goodFiles);
    const body = (op: string) =>
      op === 'BatchGetSecretValue'
        ? `{"SecretValues":[{"Name":"leak/api","SecretString":"${V('g1')}"} ${CANARY}]}`
        : `{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:leak/api","SecretString":"${V('g2')}" ${CANARY}, "x": ${CANARY}}`;
    proxy.fault = (op) =>
      op === 'GetSecretValue' || op === 'BatchGetSecretValue' ? { kind: 'status', status: 200, body: body(op), headers: { 'content-type': 'application/x-amz-json-1.1' } } : undefined;
    try {
      const r = await cli('init garbled', ['init', '--config', c.config, '--log-level', 'trace', '--timeout', '3s']);
      assert.equal(await readOr(join(c.out, 'api'), 'absent'), 'absent', 'a file was written from a garbled answer');
      assert.equal(r.code, 1, `init must fail after --timeout when every answer is garbled; it exited ${r.code} without writing anything:\n${r.stderr.slice(-600)}`);
    } finally {
      proxy.fault = undefined;
    }
  });

  it('when secrets are missing or refused, the errors name ids and codes only', async () => {
    const c = await write('missing', goodFiles + '\n  - path: ghost\n    secret: ghost', '');
    await writeFile(c.config, (await readOr(c.config)).replace('secrets:\n', 'secrets:\n  ghost: { id: leak/does-not-exist }\n'));
    proxy.fault = (op, req) =>
      req.body.includes('leak/api') && op !== 'BatchGetSecretValue'
        ? { kind: 'status', status: 400, body: JSON.stringify({ __type: 'AccessDeniedException', message: 'User is not authorized to perform secretsmanager:GetSecretValue' }), headers: { 'content-type': 'application/x-amz-json-1.1' } }
        : undefined;
    try {
      const r = await cli('init missing', ['init', '--config', c.config, '--log-level', 'trace', '--timeout', '3s']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /ResourceNotFoundException/);
    } finally {
      proxy.fault = undefined;
    }
  });

  it('when the suite is done, no output, log, error or endpoint body held the canary', () => {
    leaks.assertClean('leakage');
  });
});
