// Several targets in one pod (config `targets:`), at the level the user sees:
// the real CLI on the file source writes each target as its own root (own
// ..data, own generation), a rotation in one target swaps only that target's
// generation and notifies once, a file dropped from one target is removed,
// and `validate` reports target mistakes with file:line. `convert eso` of two
// ExternalSecrets gives two targets, and `init` against moto writes each key
// at <outputDir>/<target>/<key> with ESO's bytes.
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { stopAgent } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const FIX = 'test/fixtures/eso/secretsmanager';

const config = (notes: string, apiFiles: string): string => `source: { type: file, path: secrets.yaml }
outputDir: out
targets: [db-creds, api-keys]
refresh: { interval: 300ms }
secrets:
  db: { id: db }
  api: { id: api }
files:
  - path: db-creds/DB_PASSWORD
    secret: db
    key: password
${apiFiles}
notify:
  - exec: ["/bin/sh", "-c", "echo \\"$SECRETS_AGENT_CHANGED_FILES\\" >> ${notes}"]
server: { listen: "" }
`;
const TWO_API_FILES = '  - path: api-keys/TOKEN\n    secret: api\n    key: token\n  - path: api-keys/EXTRA\n    secret: api\n    key: extra';

describe('run with two targets (file source)', () => {
  let dir: string;
  let agent: RunningAgent | undefined;
  const out = (...p: string[]): string => join(dir, 'out', ...p);
  const notes = async (): Promise<string[]> => (await readOr(join(dir, 'notified'))).split('\n').filter(Boolean);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-targets-'));
    await writeFile(join(dir, 'secrets.yaml'), 'db: { password: pw1 }\napi: { token: tok1, extra: x1 }\n');
    await writeFile(join(dir, 'config.yaml'), config(join(dir, 'notified'), TWO_API_FILES));
  });

  after(async () => {
    if (agent) await stopAgent(agent);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes both targets as roots of their own; a rotation in one swaps only its generation and notifies once', async () => {
    agent = startAgent(['run', '--config', join(dir, 'config.yaml')], { cwd: dir });
    await agent.waitFor(/first render complete/);
    assert.deepEqual((await readdir(out())).sort(), ['api-keys', 'db-creds'], 'nothing at the top but the target directories');
    for (const t of ['db-creds', 'api-keys']) assert.ok((await lstat(out(t))).isDirectory() && !(await lstat(out(t))).isSymbolicLink(), `${t} is a real directory (a subPath mount of it stays valid)`);
    assert.equal(await readFile(out('db-creds', 'DB_PASSWORD'), 'utf8'), 'pw1');
    assert.equal(await readFile(out('api-keys', 'TOKEN'), 'utf8'), 'tok1');
    const dbGen = await readlink(out('db-creds', '..data'));
    const apiGen = await readlink(out('api-keys', '..data'));
    const before = (await notes()).length;

    await writeFile(join(dir, 'secrets.yaml'), 'db: { password: pw2 }\napi: { token: tok1, extra: x1 }\n');
    await waitUntil('db-creds rotated', async () => (await readOr(out('db-creds', 'DB_PASSWORD'))) === 'pw2', 20_000);
    await waitUntil('the notification', async () => (await notes()).length > before, 20_000);
    assert.notEqual(await readlink(out('db-creds', '..data')), dbGen, 'db-creds has a new generation');
    assert.equal(await readlink(out('api-keys', '..data')), apiGen, 'api-keys keeps its generation');
    // A few more check rounds (300ms each): still exactly one notification, naming the target/path.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.deepEqual((await notes()).slice(before), ['db-creds/DB_PASSWORD']);
  });

  it('a file dropped from one target (config reload) is removed from that target only', async () => {
    assert.ok(agent);
    await writeFile(join(dir, 'config.yaml'), config(join(dir, 'notified'), '  - path: api-keys/TOKEN\n    secret: api\n    key: token'));
    await waitUntil('api-keys/EXTRA removed', async () => (await readOr(out('api-keys', 'EXTRA'), 'gone')) === 'gone', 20_000);
    assert.equal(await readFile(out('api-keys', 'TOKEN'), 'utf8'), 'tok1');
    assert.equal(await readFile(out('db-creds', 'DB_PASSWORD'), 'utf8'), 'pw2');
    assert.deepEqual((await readdir(out('api-keys'))).filter((n) => !n.startsWith('..')), ['TOKEN']);
  });
});

describe('validate with targets', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-targets-validate-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports a nested target, a file under no target, a duplicate target and an unsafe name, each with file:line', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      `outputDir: /run/secrets
targets:
  - db
  - db/inner
  - db
  - ..hidden
secrets:
  s: { id: s }
files:
  - path: db/ok
    secret: s
  - path: stray
    secret: s
  - dir: .
    secret: s
    eachKey: true
`,
    );
    const r = await runAgent(['validate', '--config', file]);
    assert.equal(r.code, 2, r.stderr);
    const text = (r.stdout + r.stderr)
      .split('\n')
      .map((l) => {
        try {
          return (JSON.parse(l) as { msg: string }).msg;
        } catch {
          return l;
        }
      })
      .join('\n');
    assert.match(text, /bad\.yaml:4:.*"db\/inner" is inside the target "db"/);
    assert.match(text, /bad\.yaml:5:.*"db" is already targets\[0\]/);
    assert.match(text, /bad\.yaml:6:.*reserved/);
    assert.match(text, /bad\.yaml:12:.*"stray" is under none of the targets/);
    assert.match(text, /bad\.yaml:14:.*"\." is under none of the targets/);
  });

  it('accepts notify files named target/path and an eachKey dir that is a target', async () => {
    const file = join(dir, 'good.yaml');
    await writeFile(
      file,
      `outputDir: /run/secrets
targets: [db, api]
secrets:
  s: { id: s }
files:
  - path: db/DB_PASSWORD
    secret: s
  - dir: api
    secret: s
    eachKey: true
notify:
  - exec: [/bin/true]
    files: [db/DB_PASSWORD]
`,
    );
    const r = await runAgent(['validate', '--config', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});

describe('convert eso with two ExternalSecrets -> two targets -> init against moto', () => {
  let moto: Moto;
  let dir: string;

  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-targets-eso-'));
  });
  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('golden config: one target per ESO target name, and the diagnostic says to mount with subPath: <target>', async () => {
    const r = await runAgent(['convert', 'eso', '--output-dir', '/etc/app-secrets', join(FIX, 'targets.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, await readFile(join(FIX, 'targets.expected.yaml'), 'utf8'));
    assert.match(r.stdout, /^targets:\n {2}- db-creds\n {2}- api-keys$/m);
    assert.match(r.stderr, /targets\.yaml:\d+: note: the ExternalSecrets have 2 targets \(db-creds, api-keys\).*subPath: <target> \(e\.g\. subPath: db-creds\)/);
  });

  it('init writes each key at <outputDir>/<target>/<key> with the bytes ESO would put in the Secret', async () => {
    const token = join(dir, 'token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    await moto.sm('CreateSecret', { Name: 'db', SecretString: '{"password":"s3cr3t","user":"admin"}' });
    await moto.sm('CreateSecret', { Name: 'api', SecretString: '{"token":"t0k","limits":{"rps":5},"off":false}' });
    const out = join(dir, 'out');
    const r = await runAgent(['convert', 'eso', '--output-dir', out, join(FIX, 'targets.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    await writeFile(join(dir, 'config.yaml'), r.stdout);
    assert.equal((await runAgent(['validate', '--config', join(dir, 'config.yaml')])).code, 0);
    const init = await runAgent(['init', '--config', join(dir, 'config.yaml'), '--timeout', '20s'], { env: agentEnv(moto, token) });
    assert.equal(init.code, 0, init.stderr);
    // data[].remoteRef.property: the gjson String() of the value
    assert.equal(await readFile(join(out, 'db-creds', 'DB_PASSWORD'), 'utf8'), 's3cr3t');
    assert.equal(await readFile(join(out, 'db-creds', 'DB_USER'), 'utf8'), 'admin');
    // dataFrom.extract: every top-level key; strings raw, other values as stored JSON
    assert.equal(await readFile(join(out, 'api-keys', 'token'), 'utf8'), 't0k');
    assert.equal(await readFile(join(out, 'api-keys', 'limits'), 'utf8'), '{"rps":5}');
    assert.equal(await readFile(join(out, 'api-keys', 'off'), 'utf8'), 'false');
    // Each target is its own root: the app mounts the volume with subPath: <target>.
    for (const t of ['db-creds', 'api-keys']) assert.match(await readlink(join(out, t, '..data')), /^\.\.\d{4}_/);
    assert.deepEqual((await readdir(out)).sort(), ['api-keys', 'db-creds']);
  });
});
