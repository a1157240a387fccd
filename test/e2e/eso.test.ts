// `convert eso` at the level the user sees: ESO manifests (written from ESO's
// docs, test/fixtures/eso/) -> the golden configs; each converted Secrets
// Manager config passes validate and runs `init` against moto, writing for
// every key exactly the bytes ESO would put in the Secret (each assertion
// names the ESO rule). Bad input exits 2 naming file and line.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAIN, REPO, runAgent, startAgent, type RunResult } from '../support/cli.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { stopAgent } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const FIX = 'test/fixtures/eso';
const convert = (...args: string[]): Promise<RunResult> => runAgent(['convert', 'eso', ...args]);

describe('convert eso: golden configs', () => {
  for (const c of ['secretsmanager/input', 'secretsmanager/template', 'parameterstore/input']) {
    it(`${c}.yaml -> ${c}.expected.yaml`, async () => {
      const r = await convert('--output-dir', '/etc/app-secrets', join(FIX, `${c}.yaml`));
      assert.equal(r.stdout, await readFile(join(FIX, `${c}.expected.yaml`), 'utf8'));
      assert.equal(r.code, c.endsWith('template') ? 1 : 0, r.stderr);
    });
  }

  it('templates: the v2 subset becomes Liquid; a range is listed with its file:line (exit 1)', async () => {
    const r = await convert(join(FIX, 'secretsmanager/template.yaml'));
    assert.match(r.stderr, /template\.yaml:31: not converted: template for key "loop": "\{\{ range \}\}"/);
  });

  it('auth.jwt: prints the annotation and the IRSA trust policy (OIDC Federated principal, :sub and :aud)', async () => {
    const r = await convert(join(FIX, 'secretsmanager/input.yaml'));
    assert.match(r.stderr, /eks\.amazonaws\.com\/role-arn/);
    assert.match(r.stderr, /"Federated":"arn:aws:iam::ACCOUNT_ID:oidc-provider\/oidc\.eks\.us-east-1\.amazonaws\.com\/id\/CLUSTER_ID"/);
    assert.match(r.stderr, /:sub":"system:serviceaccount:app:APP_SERVICE_ACCOUNT"/);
    assert.match(r.stderr, /:aud":"sts\.amazonaws\.com"/);
    assert.doesNotMatch(r.stderr, /"Service":"eks\.amazonaws\.com"/);
  });

  it('reads stdin for "-"', async () => {
    const child = spawn(process.execPath, [MAIN, 'convert', 'eso', '--output-dir', '/etc/app-secrets', '-'], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stdin.end(await readFile(join(FIX, 'parameterstore/input.yaml')));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    assert.equal(out.split('\n').slice(2).join('\n'), (await readFile(join(FIX, 'parameterstore/input.expected.yaml'), 'utf8')).split('\n').slice(2).join('\n'));
  });

  for (const [file, line, what] of [
    ['configmap', 2, /ConfigMap \(v1\) is not an ESO/],
    ['no-store', 6, /the SecretStore "missing" it names is not in the input/],
    ['broken', 5, /YAML syntax error/],
  ] as const) {
    it(`bad input (${file}) exits 2 naming file and line`, async () => {
      const r = await convert(join(FIX, `bad/${file}.yaml`));
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`bad/${file}\\.yaml:${line}: error: `));
      assert.match(r.stderr, what);
    });
  }

  it('ParameterStore: the converted config validates', async () => {
    const r = await runAgent(['validate', '--config', join(FIX, 'parameterstore/input.expected.yaml')]);
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('convert eso -> init against moto: the bytes ESO would write', () => {
  let moto: Moto;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const friends = '{"user":"admin","password":"s3cr3t","address":{"city":"Paris","zip":75001},"tags":[1, 2],"note":null}';
  const blob = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 0x80]);

  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-eso-'));
    const token = join(dir, 'token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    env = agentEnv(moto, token);
    await moto.sm('CreateSecret', { Name: 'encoded', SecretString: 'aGVsbG8gd29ybGQ=' });
    await moto.sm('CreateSecret', { Name: 'blob', SecretBinary: blob.toString('base64') });
  });

  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('data with and without property, nested property, version, decodingStrategy, binary, dataFrom.extract', async () => {
    const { VersionId: first } = await moto.sm<{ VersionId: string }>('CreateSecret', { Name: 'friends', SecretString: friends.replace('s3cr3t', 'old') });
    await moto.sm('PutSecretValue', { SecretId: 'friends', SecretString: friends });
    const input = (await readFile(join(FIX, 'secretsmanager/input.yaml'), 'utf8')).replace('VERSION_ID', first);
    await writeFile(join(dir, 'eso.yaml'), input);
    const out = join(dir, 'out');
    const r = await convert('--output-dir', out, join(dir, 'eso.yaml'));
    assert.equal(r.code, 0, r.stderr);
    await writeFile(join(dir, 'config.yaml'), r.stdout.replace('region: us-east-1', 'region: us-east-1\n  # moto'));
    assert.equal((await runAgent(['validate', '--config', join(dir, 'config.yaml')])).code, 0);
    const init = await runAgent(['init', '--config', join(dir, 'config.yaml'), '--timeout', '20s'], { env });
    assert.equal(init.code, 0, init.stderr);
    const file = (name: string): Promise<Buffer> => readFile(join(out, name));
    // data[].remoteRef.property: gjson String() of the value (GetSecret, secretsmanager.go:480-484)
    assert.equal((await file('password')).toString(), 's3cr3t');
    // no property: the whole SecretString (secretsmanager.go:471-474)
    assert.equal((await file('whole')).toString(), friends);
    // nested dotted property (escapeDotsIfRequired, then gjson path)
    assert.equal((await file('city')).toString(), 'Paris');
    // version uuid/...: GetSecretValue with that VersionId (constructSecretValue, secretsmanager.go:795-800)
    assert.equal((await file('pinned')).toString(), 'old');
    // decodingStrategy Base64 and Auto (decoding.go:43-69)
    assert.equal((await file('cert')).toString(), 'hello world');
    assert.equal((await file('auto')).toString(), 'hello world');
    // SecretBinary: the bytes as they are (secretsmanager.go:475-477)
    assert.deepEqual(await file('blob'), blob);
    // dataFrom.extract: every top-level key; strings raw, other values as stored JSON, null empty (GetSecretMap, secretsmanager.go:524-546);
    // data wins over dataFrom for the same key (externalsecret_controller_secret.go:80-120)
    assert.equal((await file('user')).toString(), 'admin');
    assert.equal((await file('address')).toString(), '{"city":"Paris","zip":75001}');
    assert.equal((await file('tags')).toString(), '[1, 2]');
    assert.equal((await file('note')).toString(), '');
    assert.deepEqual((await readdir(out)).filter((n) => !n.startsWith('..')).sort(), ['address', 'auto', 'blob', 'cert', 'city', 'note', 'password', 'pinned', 'tags', 'user', 'whole']);
  });

  it('ParameterStore store: a pinned version with a property and a plain parameter, through the store\'s role', async () => {
    const put = async (Name: string, Value: string, Type = 'SecureString'): Promise<void> => {
      await moto.ssm('PutParameter', { Name, Value, Type, Overwrite: true });
    };
    // Version 3 is the one ESO reads (remoteRef.version "3"); version 4 is newer and must not be used.
    for (const v of ['{"password":"v1"}', '{"password":"v2"}', '{"password":"pinned-3"}', '{"password":"v4"}']) await put('/team-a/db', v);
    await put('/team-a/host', 'db.internal', 'String');
    const out = join(dir, 'ps-out');
    const r = await convert('--output-dir', out, join(FIX, 'parameterstore/input.yaml'));
    assert.ok(r.code === 0 || r.code === 1, r.stderr);
    // moto holds the parameters in us-east-1 (the store says eu-west-1).
    await writeFile(join(dir, 'ps.yaml'), r.stdout.replace('region: eu-west-1', 'region: us-east-1'));
    const init = await runAgent(['init', '--config', join(dir, 'ps.yaml'), '--timeout', '20s'], { env });
    assert.equal(init.code, 0, init.stderr);
    // data[].remoteRef.version on a parameter: GetParameter of name:version (parameterstore.go, GetSecret);
    // property: gjson String() of that version's value
    assert.equal((await readFile(join(out, 'password'))).toString(), 'pinned-3');
    // no property: the whole value
    assert.equal((await readFile(join(out, 'host'))).toString(), 'db.internal');
  });

  it('templates (engine v2 subset) render as ESO would; refreshInterval "0" is never re-checked', async () => {
    const out = join(dir, 'tpl');
    const r = await convert('--output-dir', out, join(FIX, 'secretsmanager/template.yaml'));
    assert.equal(r.code, 1);
    const config = r.stdout.replace('files:', 'refresh: { interval: 200ms }\nserver: { listen: "" }\nfiles:').replace('    refreshInterval: never\n', '    refreshInterval: never\n  ticker:\n    id: encoded\n    refreshInterval: 200ms\n') + '  - { path: ticker, secret: ticker }\n';
    await writeFile(join(dir, 'tpl.yaml'), config);
    const agent = startAgent(['run', '--config', join(dir, 'tpl.yaml')], { env });
    try {
      await agent.waitFor(/first render complete/);
      // ESO: {{ .user | upper }}, {{ .password | quote }} (sprig), {{ .password | b64enc }}
      assert.equal(await readOr(join(out, 'config.yml')), 'user: ADMIN\npassword: "s3cr3t"\n');
      assert.equal(await readOr(join(out, 'token')), Buffer.from('s3cr3t').toString('base64'));
      // refreshInterval 0 (ESO: fetched once): a change is not picked up, while a refreshed secret's is
      await moto.sm('PutSecretValue', { SecretId: 'friends', SecretString: friends.replace('admin', 'root') });
      await moto.sm('PutSecretValue', { SecretId: 'encoded', SecretString: 'changed' });
      await waitUntil('the refreshed secret', async () => (await readOr(join(out, 'ticker'))) === 'changed', 20_000);
      assert.equal(await readOr(join(out, 'config.yml')), 'user: ADMIN\npassword: "s3cr3t"\n');
    } finally {
      await stopAgent(agent);
    }
  });
});
