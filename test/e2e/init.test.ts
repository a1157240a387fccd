// End to end, as an init container runs it: the real CLI (`node agent/main.ts init`)
// against moto's real Secrets Manager + STS, with web identity credentials
// (AWS_ROLE_ARN + a token file), writing into a real temp dir.
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readlink, realpath, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, type RunResult } from '../support/cli.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { startProxy } from '../support/proxy.ts';

const CANARY = 'CANARY-e2e-7f3a9c41';

describe('init against moto (web identity)', () => {
  let moto: Moto;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const outputs: RunResult[] = [];
  const ids: Record<string, string> = {};
  const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 0x80, ...Buffer.from(CANARY)]);

  const init = async (config: string, extra: string[] = []): Promise<RunResult> => {
    const path = join(dir, 'config.yaml');
    await writeFile(path, config);
    const r = await runAgent(['init', '--config', path, '--log-level', 'debug', '--timeout', '20s', ...extra], { env });
    outputs.push(r);
    return r;
  };

  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-e2e-init-'));
    const token = join(dir, 'token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    env = agentEnv(moto, token);
    const create = async (name: string, body: Record<string, unknown>) => {
      const r = await moto.sm<{ ARN: string; VersionId: string }>('CreateSecret', { Name: name, ...body });
      ids[name] = r.ARN;
      return r;
    };
    await create('app/db', { SecretString: JSON.stringify({ username: 'app_user', password: `pw-${CANARY}`, host: 'db.internal', port: 5432 }) });
    await create('app/api-key', { SecretString: `key-${CANARY}` });
    await create('app/blob', { SecretBinary: binary.toString('base64') });
    await create('app/tls', { SecretString: JSON.stringify({ certificate: `CERT ${CANARY}\n`, private_key: `KEY ${CANARY}\n` }) });
    await create('app/rotated', { SecretString: `old-${CANARY}` });
    await moto.sm('PutSecretValue', { SecretId: 'app/rotated', SecretString: `new-${CANARY}` });
    const pinned = await create('app/pinned', { SecretString: `v1-${CANARY}` });
    ids.pinnedVersion = pinned.VersionId;
    await moto.sm('PutSecretValue', { SecretId: 'app/pinned', SecretString: `v2-${CANARY}` });
    for (const n of [7, 8, 9, 10]) await create(`app/s${n}`, { SecretString: `s${n}-${CANARY}` });
    await create('app/json', { SecretString: JSON.stringify({ a: 1, nested: { b: 'x' }, list: [1, 2] }) });
  });

  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const baseConfig = () => `
source:
  region: us-east-1
outputDir: ${join(dir, 'out')}
secrets:
  db: { id: app/db }
  api_key: { id: app/api-key }
  blob: { id: app/blob }
  tls: { id: "${ids['app/tls']}" }
  previous: { id: app/rotated, versionStage: AWSPREVIOUS }
  current: { id: app/rotated }
  pinned: { id: app/pinned, versionId: "${ids.pinnedVersion}" }
  s7: { id: app/s7 }
  s8: { id: "${ids['app/s8']}" }
  s9: { id: app/s9 }
  s10: { id: app/s10 }
  js: { id: app/json }
files:
  - path: db.env
    template: |
      DB_USER={{ secrets.db.username }}
      DB_PASSWORD={{ secrets.db.password | dotenv }}
      DB_PORT={{ secrets.db.port }}
  - path: api-key
    secret: api_key
    mode: "0440"
  - path: blob.bin
    secret: blob
  - path: tls.crt
    secret: tls
    key: certificate
  - path: tls.key
    secret: tls
    key: private_key
  - path: previous.txt
    secret: previous
  - path: current.txt
    secret: current
  - path: pinned.txt
    secret: pinned
  - path: many.txt
    template: "{{ raw.s7 }}|{{ raw.s8 }}|{{ raw.s9 }}|{{ raw.s10 }}|{{ secrets.js.nested.b }}|{{ meta.s8.name }}"
  - path: conf/nested.json
    secret: js
    key: nested
`;

  it('when every secret exists, it writes every file with the right bytes, modes and ..data layout', async () => {
    const r = await init(baseConfig());
    assert.equal(r.code, 0, r.stderr);
    const out = join(dir, 'out');
    const expect: Record<string, string | Buffer> = {
      'db.env': `DB_USER=app_user\nDB_PASSWORD="pw-${CANARY}"\nDB_PORT=5432\n`,
      'api-key': `key-${CANARY}`,
      'blob.bin': binary,
      'tls.crt': `CERT ${CANARY}\n`,
      'tls.key': `KEY ${CANARY}\n`,
      'previous.txt': `old-${CANARY}`,
      'current.txt': `new-${CANARY}`,
      'pinned.txt': `v1-${CANARY}`,
      'many.txt': `s7-${CANARY}|s8-${CANARY}|s9-${CANARY}|s10-${CANARY}|x|app/s8`,
      'conf/nested.json': '{"b":"x"}',
    };
    for (const [path, content] of Object.entries(expect)) {
      const got = await readFile(join(out, path));
      assert.deepEqual(got, Buffer.isBuffer(content) ? content : Buffer.from(content), path);
    }
    // ..data -> ..<timestamp>, user-visible names are links through ..data
    const data = await readlink(join(out, '..data'));
    assert.match(data, /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+/);
    for (const top of ['db.env', 'api-key', 'blob.bin', 'tls.crt', 'tls.key', 'conf']) {
      assert.ok((await lstat(join(out, top))).isSymbolicLink(), `${top} is a link`);
      assert.equal(await readlink(join(out, top)), `..data/${top}`);
      assert.ok((await realpath(join(out, top))).startsWith(join(out, data)), `${top} resolves into the generation`);
    }
    assert.equal((await stat(join(out, 'db.env'))).mode & 0o777, 0o400);
    assert.equal((await stat(join(out, 'api-key'))).mode & 0o777, 0o440);
    const entries = (await readdir(out)).filter((e) => e.startsWith('..'));
    assert.deepEqual(entries.sort(), ['..data', data].sort(), 'one generation, no leftovers');
  });

  it('when run again with nothing changed, it writes nothing', async () => {
    const out = join(dir, 'out');
    const before = await readlink(join(out, '..data'));
    const r = await init(baseConfig());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readlink(join(out, '..data')), before);
  });

  it('when a secret is missing, it exits 1 naming it and leaves the previous generation intact', async () => {
    const out = join(dir, 'out');
    const before = await readlink(join(out, '..data'));
    const beforeBytes = await readFile(join(out, 'db.env'));
    const config = baseConfig().replace('secrets:\n', 'secrets:\n  ghost: { id: app/does-not-exist }\n');
    const r = await init(config);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /secret \\?"ghost\\?" \(app\/does-not-exist\)/);
    assert.match(r.stderr, /ResourceNotFoundException/);
    assert.equal(await readlink(join(out, '..data')), before);
    assert.deepEqual(await readFile(join(out, 'db.env')), beforeBytes);
  });

  it('when a template uses a missing key, it exits 1 naming the file, template line and variable', async () => {
    const out = join(dir, 'out');
    const before = await readlink(join(out, '..data'));
    const config = baseConfig().replace('DB_PORT={{ secrets.db.port }}', 'DB_PORT={{ secrets.db.prot }}');
    const r = await init(config);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /db\.env/);
    assert.match(r.stderr, /secrets\.db\.prot/);
    assert.match(r.stderr, /line 3/);
    assert.equal(await readlink(join(out, '..data')), before);
  });

  it('when the config is malformed, it exits 2 with file:line for each mistake', async () => {
    const good = baseConfig();
    const cases: [string, string, RegExp][] = [
      ['unknown top-level key', good + 'extra: 1\n', /config\.yaml:\d+: extra/],
      ['typo in refresh', good.replace('source:', 'refresh:\n  intervall: 5m\nsource:'), /config\.yaml:\d+: refresh\.intervall/],
      ['bad duration', good.replace('source:', 'refresh:\n  interval: 5 min\nsource:'), /config\.yaml:\d+: refresh\.interval/],
      ['bad mode', good.replace('mode: "0440"', 'mode: "0999"'), /config\.yaml:\d+: files\[1\]\.mode/],
      ['unquoted mode', good.replace('mode: "0440"', 'mode: 0440'), /config\.yaml:\d+: files\[1\]\.mode/],
      ['path escapes', good.replace('path: api-key', 'path: ../api-key'), /config\.yaml:\d+: files\[1\]\.path/],
      ['absolute path', good.replace('path: api-key', 'path: /etc/api-key'), /config\.yaml:\d+: files\[1\]\.path/],
      ['undeclared secret', good.replace('secret: api_key', 'secret: nope'), /config\.yaml:\d+: files\[1\]\.secret/],
      ['stage and version', good.replace('versionStage: AWSPREVIOUS', 'versionStage: AWSPREVIOUS, versionId: abc'), /config\.yaml:\d+: secrets\.previous/],
      ['yaml syntax', good.replace('files:', 'files: [\n'), /config\.yaml:\d+/],
      ['missing outputDir', good.replace(/outputDir: .*\n/, ''), /config\.yaml(:\d+)?: .*outputDir/],
      ['two sources for a file', good.replace('secret: api_key', 'template: x\n    templateFile: x.liquid'), /config\.yaml:\d+: files\[1\]/],
    ];
    for (const [name, text, re] of cases) {
      const r = await init(text);
      assert.equal(r.code, 2, `${name}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re, name);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `${name}: no stack trace`);
    }
  });

  it('when BatchGetSecretValue is refused, it falls back to GetSecretValue and still writes everything', async () => {
    const proxy = await startProxy(moto.url);
    try {
      proxy.fault = (op) =>
        op === 'BatchGetSecretValue'
          ? { kind: 'status', status: 400, body: JSON.stringify({ __type: 'AccessDeniedException', message: 'not authorized to perform: secretsmanager:BatchGetSecretValue' }) }
          : undefined;
      const out = join(dir, 'fallback');
      const path = join(dir, 'fallback.yaml');
      await writeFile(path, baseConfig().replace(`outputDir: ${join(dir, 'out')}`, `outputDir: ${out}`));
      const r = await runAgent(['init', '--config', path], { env: { ...env, AWS_ENDPOINT_URL: proxy.url } });
      outputs.push(r);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /BatchGetSecretValue refused; falling back to GetSecretValue/);
      assert.equal(proxy.count('BatchGetSecretValue'), 1, 'batch tried once, then not again');
      // 12 secrets: every one read with GetSecretValue (AWSPREVIOUS and the pinned one always are).
      assert.equal(proxy.count('GetSecretValue'), 12);
      assert.equal(proxy.count('AssumeRoleWithWebIdentity'), 1, 'one STS call for the whole run');
      assert.equal(await readFile(join(out, 'pinned.txt'), 'utf8'), `v1-${CANARY}`);
    } finally {
      await proxy.close();
    }
  });

  it('when batching works, the first load is one BatchGetSecretValue call plus the unbatchable ones', async () => {
    const proxy = await startProxy(moto.url);
    try {
      const path = join(dir, 'batch.yaml');
      await writeFile(path, baseConfig().replace(`outputDir: ${join(dir, 'out')}`, `outputDir: ${join(dir, 'batch-out')}`));
      const r = await runAgent(['init', '--config', path], { env: { ...env, AWS_ENDPOINT_URL: proxy.url } });
      outputs.push(r);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(proxy.count('BatchGetSecretValue'), 1);
      assert.equal(proxy.count('GetSecretValue'), 2, 'AWSPREVIOUS and the pinned versionId are read one by one');
    } finally {
      await proxy.close();
    }
  });

  it('render --output-dir writes the same files elsewhere; validate checks offline', async () => {
    const path = join(dir, 'config.yaml');
    await writeFile(path, baseConfig());
    const other = join(dir, 'rendered');
    const r = await runAgent(['render', '--config', path, '--output-dir', other], { env });
    outputs.push(r);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(join(other, 'tls.key')), await readFile(join(dir, 'out', 'tls.key')));

    // validate makes no network call: point the endpoint at nothing.
    const v = await runAgent(['validate', '--config', path], { env: { ...env, AWS_ENDPOINT_URL: 'http://127.0.0.1:9' } });
    outputs.push(v);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /ok \(12 secret\(s\), 10 file\(s\)/);

    const bad = baseConfig().replace('mode: "0440"', 'mode: "0999"').replace('secret: blob', 'secret: nope').replace('{{ raw.s7 }}', '{{ raw.s77 }}');
    await writeFile(path, bad);
    const v2 = await runAgent(['validate', '--config', path], { env });
    outputs.push(v2);
    assert.equal(v2.code, 2);
    assert.match(v2.stderr, /files\[1\]\.mode/);
    assert.match(v2.stderr, /files\[2\]\.secret/);
  });

  it('with EKS Pod Identity (a token file ending in a newline), it gets credentials from the agent endpoint and writes the files', async () => {
    // The Pod Identity agent is a link-local HTTP endpoint on EKS nodes; here a local server
    // plays it (loopback is one of the hosts the SDK accepts). moto accepts any credentials.
    const { createServer } = await import('node:http');
    const seen: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ AccessKeyId: 'ASIAPODIDENTITY', SecretAccessKey: 'x', Token: 'y', Expiration: new Date(Date.now() + 3_600_000).toISOString() }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const tokenFile = join(dir, 'pod-identity-token');
      await writeFile(tokenFile, 'eks-pod-identity-token\n');
      const podEnv: NodeJS.ProcessEnv = { ...env, AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${port}/v1/credentials`, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile };
      delete podEnv.AWS_ROLE_ARN;
      delete podEnv.AWS_WEB_IDENTITY_TOKEN_FILE;
      const path = join(dir, 'pod.yaml');
      await writeFile(path, baseConfig().replace(`outputDir: ${join(dir, 'out')}`, `outputDir: ${join(dir, 'pod-out')}`));
      const r = await runAgent(['init', '--config', path], { env: podEnv });
      outputs.push(r);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /container \(EKS Pod Identity\)/);
      assert.deepEqual(seen, ['eks-pod-identity-token'], 'one credentials request, token sent without the newline');
      assert.equal(await readFile(join(dir, 'pod-out', 'api-key'), 'utf8'), `key-${CANARY}`);
    } finally {
      server.close();
    }
  });

  it('version and --help exit 0; an unknown command or flag exits 2', async () => {
    const v = await runAgent(['version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^secrets-agent \d+\.\d+\.\d+/);
    const h = await runAgent(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: secrets-agent <command>/);
    assert.equal((await runAgent(['frobnicate'])).code, 2);
    assert.equal((await runAgent(['init', '--no-such-flag'])).code, 2);
  });

  it('never prints a secret value (canary) in any run', () => {
    assert.ok(outputs.length >= 5);
    for (const r of outputs) {
      assert.ok(!r.stdout.includes(CANARY), 'stdout leaks the canary');
      assert.ok(!r.stderr.includes(CANARY), 'stderr leaks the canary');
    }
  });
});
