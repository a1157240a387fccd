// Apps that read environment variables move off ESO unchanged: inject rewrites
// secretKeyRef and envFrom of ESO's Secret to fileKeyRef on the agent's env
// file, and init writes an env file from which the kubelet's parser (our
// test/support/kubelet-env.ts, tested on the kubelet's own cases) reads, for
// every variable, exactly the bytes ESO would have put in the Secret. No
// kubelet here: the kubelet's reading is the one thing mocked, by that parser.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { kubeletParseEnv } from '../support/kubelet-env.ts';
import { stopAgent } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;
const FIX = 'test/fixtures/inject/env';
const IMAGE = ['--image', 'registry.example.com/tools/secrets-agent:0.1.0'];
const docsOf = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj);

async function validateSchema(obj: Obj): Promise<void> {
  // kubernetes-models 5.1 has EnvVarSource.fileKeyRef (Kubernetes 1.34+).
  const mod = (await import(`kubernetes-models/${obj.apiVersion}/${obj.kind}`)) as Record<string, new (d: unknown) => { validate(): void }>;
  new mod[obj.kind]!(obj).validate();
}

/** Every place a pod spec can name a Secret. */
function secretRefs(spec: Obj): string[] {
  const found: string[] = [];
  for (const v of spec.volumes ?? []) if (v.secret) found.push(`volume ${v.name}`);
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) found.push(`${c.name} env ${e.name}`);
    for (const e of c.envFrom ?? []) if (e.secretRef) found.push(`${c.name} envFrom ${e.secretRef.name}`);
  }
  return found;
}

// Values with everything an env file could trip on: JSON, =, #, $, double quotes, spaces, unicode, a newline.
const DB = { username: 'app', password: 'p=a#s$s "w rd"', greeting: '  héllo wörld 🌍 = #not-a-comment $HOME ${X} "quoted"  ', port: 5432, multi: 'l1\nl2' };
const API_TOKEN = 'tok=en#1 $x "y"';

describe('inject --from-eso: env from ESO\'s Secret becomes fileKeyRef on the agent\'s env file', () => {
  let moto: Moto;
  let dir: string;
  let r: Awaited<ReturnType<typeof runAgent>>;
  let out: Obj[];
  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-env-files-'));
    await writeFile(join(dir, 'token'), 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    r = await runAgent(['inject', '--from-eso', join(FIX, 'eso.yaml'), ...IMAGE, join(FIX, 'deployment.yaml')]);
    out = docsOf(r.stdout);
  });
  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exits 0, leaves no reference to the ESO Secret, validates against the Kubernetes schema, and changes neither command nor mounts of the app', async () => {
    assert.equal(r.code, 0, r.stderr);
    for (const o of out) await validateSchema(o);
    const deployment = out.find((o) => o.kind === 'Deployment')!;
    const spec = deployment.spec.template.spec;
    assert.deepEqual(secretRefs(spec), []);
    const web = spec.containers[0];
    assert.equal(web.command, undefined);
    assert.equal(web.args, undefined);
    assert.equal(web.volumeMounts, undefined, 'the kubelet reads the env file itself: no mount');
    assert.equal(web.envFrom, undefined);
    // envFrom's keys first (in envFrom order), then the app's own env, which wins as before.
    assert.deepEqual(web.env.map((e: Obj) => e.name), ['GREETING', 'DB_JSON', 'API_TOKEN', 'CERT', 'DB_PASSWORD', 'LOG_LEVEL']);
    assert.deepEqual(web.env[4].valueFrom, { fileKeyRef: { volumeName: 'secrets-agent-files', path: 'db-credentials/db-credentials.env', key: 'DB_PASSWORD' } });
    assert.deepEqual(web.env[5], { name: 'LOG_LEVEL', value: 'info' });
    const volume = spec.volumes.find((v: Obj) => v.name === 'secrets-agent-files');
    assert.ok(volume.emptyDir, 'fileKeyRef needs an emptyDir volume');
  });

  it('prints the IAM policy the agent needs (DescribeSecret for checks, ListSecrets with batchChecks, kms:Decrypt for customer keys) and the workload\'s real ServiceAccount for the trust policy', () => {
    assert.match(r.stderr, /note: the agent's IAM policy .*\n.*"secretsmanager:GetSecretValue","secretsmanager:DescribeSecret"\],"Resource":\["arn:aws:secretsmanager:us-east-1:ACCOUNT_ID:secret:prod\/shop\/db-\?{6}","arn:aws:secretsmanager:us-east-1:ACCOUNT_ID:secret:prod\/shop\/api-\?{6}"\]/);
    assert.match(r.stderr, /secretsmanager:ListSecrets/);
    assert.match(r.stderr, /"kms:Decrypt".*"kms:ViaService":\["secretsmanager\.us-east-1\.amazonaws\.com"\]/);
    assert.match(r.stderr, /deployment\.yaml:17: note: this Deployment runs as the ServiceAccount "web" of namespace "shop": .*sub "system:serviceaccount:shop:web"/);
  });

  it('init with the injected config writes an env file from which the kubelet reads, for every variable, exactly ESO\'s bytes', async () => {
    const [cm, deployment] = [out.find((o) => o.kind === 'ConfigMap')!, out.find((o) => o.kind === 'Deployment')!];
    await moto.sm('CreateSecret', { Name: 'prod/shop/db', SecretString: JSON.stringify(DB) });
    await moto.sm('CreateSecret', { Name: 'prod/shop/api', SecretString: Buffer.from(API_TOKEN).toString('base64') });
    const volume = join(dir, 'volume');
    const config = cm.data['config.yaml'] as string;
    await writeFile(join(dir, 'config.yaml'), config.replace(`outputDir: ${(parse(config) as Obj).outputDir}`, `outputDir: ${volume}`));
    const init = await runAgent(['init', '--config', join(dir, 'config.yaml'), '--timeout', '20s'], { env: agentEnv(moto, join(dir, 'token')) });
    assert.equal(init.code, 0, init.stderr);

    // What ESO puts in the Secret (docs/eso.md): a property as gjson's String(), no property: the
    // whole SecretString, decodingStrategy Base64: the decoded bytes.
    const eso: Record<string, string> = { DB_PASSWORD: DB.password, GREETING: DB.greeting, DB_JSON: JSON.stringify(DB), API_TOKEN, CERT: DB.multi, LOG_LEVEL: 'info' };
    const seen: Record<string, string> = {};
    for (const e of deployment.spec.template.spec.containers[0].env as Obj[]) {
      if (e.value !== undefined) {
        seen[e.name] = e.value;
        continue;
      }
      const ref = e.valueFrom.fileKeyRef;
      // The kubelet: SecureJoin(volume, path) (symlinks followed inside the volume), then ParseEnv.
      const got = kubeletParseEnv(await readFile(join(volume, ref.path)), ref.key, 'quoted');
      assert.ok('value' in got, `${e.name}: ${JSON.stringify(got)}`);
      seen[e.name] = got.value;
    }
    assert.deepEqual(seen, eso);
  });

  it('envFrom of a dataFrom.extract target: its keys are unknown offline, so inject says how to give them (exit 1); with --keys, each reads ESO\'s bytes', async () => {
    const extract = (await readFile(join(FIX, 'eso.yaml'), 'utf8')).replace(/ {2}data:\n[\s\S]*$/, '  dataFrom:\n    - extract:\n        key: prod/shop/db\n');
    await writeFile(join(dir, 'eso-extract.yaml'), extract);
    const envFromOnly = (await readFile(join(FIX, 'deployment.yaml'), 'utf8')).replace(/ {10}env:\n[\s\S]*$/, '');
    await writeFile(join(dir, 'deployment-envfrom.yaml'), envFromOnly);
    const without = await runAgent(['inject', '--from-eso', join(dir, 'eso-extract.yaml'), ...IMAGE, join(dir, 'deployment-envfrom.yaml')]);
    assert.equal(without.code, 1, without.stderr);
    assert.match(without.stderr, /not converted: container "web" takes envFrom the Secret "db-credentials", whose keys come from the secret's JSON at run time .*--keys db-credentials=KEY1,KEY2/);
    const r2 = await runAgent(['inject', '--from-eso', join(dir, 'eso-extract.yaml'), '--keys', 'db-credentials=username,password,port', ...IMAGE, join(dir, 'deployment-envfrom.yaml')]);
    assert.equal(r2.code, 0, r2.stderr);
    const docs = docsOf(r2.stdout);
    const web = docs.find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0];
    assert.deepEqual(web.env.map((e: Obj) => e.name), ['username', 'password', 'port']);
    const volume = join(dir, 'volume-extract');
    const config = docs.find((o) => o.kind === 'ConfigMap')!.data['config.yaml'] as string;
    await writeFile(join(dir, 'config-extract.yaml'), config.replace(`outputDir: ${(parse(config) as Obj).outputDir}`, `outputDir: ${volume}`));
    const init = await runAgent(['init', '--config', join(dir, 'config-extract.yaml'), '--timeout', '20s'], { env: agentEnv(moto, join(dir, 'token')) });
    assert.equal(init.code, 0, init.stderr);
    const read = async (e: Obj) => kubeletParseEnv(await readFile(join(volume, e.valueFrom.fileKeyRef.path)), e.valueFrom.fileKeyRef.key, 'quoted');
    // ESO's extract: each top-level key, strings raw, numbers as JSON text.
    assert.deepEqual(await Promise.all(web.env.map(read)), [{ value: DB.username }, { value: DB.password }, { value: '5432' }]);
  });

  it('--env-mode entrypoint (clusters without EnvFiles): a real /bin/sh exports every variable with ESO\'s bytes, then execs the app\'s command', async () => {
    const withCommand = (await readFile(join(FIX, 'deployment.yaml'), 'utf8')).replace('          image: registry.example.com/shop/web:1.4.2\n', '          image: registry.example.com/shop/web:1.4.2\n          command: [/app/web, --port, "8080"]\n');
    await writeFile(join(dir, 'deployment-cmd.yaml'), withCommand);
    const e = await runAgent(['inject', '--env-mode', 'entrypoint', '--from-eso', join(FIX, 'eso.yaml'), ...IMAGE, join(dir, 'deployment-cmd.yaml')]);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stderr, /--env-mode entrypoint: its command is now \/bin\/sh/);
    const docs = docsOf(e.stdout);
    for (const o of docs) await validateSchema(o);
    const web = docs.find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0];
    assert.deepEqual(secretRefs(docs.find((o) => o.kind === 'Deployment')!.spec.template.spec), []);
    assert.deepEqual([web.command[0], web.command[1], web.command[3], web.args], ['/bin/sh', '-c', '/app/web', ['--port', '8080']]);
    assert.deepEqual(web.env, [{ name: 'LOG_LEVEL', value: 'info' }]);
    const mount = web.volumeMounts.find((m: Obj) => m.name === 'secrets-agent-files');

    const volume = join(dir, 'volume-ep');
    const config = docs.find((o) => o.kind === 'ConfigMap')!.data['config.yaml'] as string;
    await writeFile(join(dir, 'config-ep.yaml'), config.replace(`outputDir: ${(parse(config) as Obj).outputDir}`, `outputDir: ${volume}`));
    const init = await runAgent(['init', '--config', join(dir, 'config-ep.yaml'), '--timeout', '20s'], { env: agentEnv(moto, join(dir, 'token')) });
    assert.equal(init.code, 0, init.stderr);
    // The container's command, with the volume where the pod mounts it, and a stand-in app that prints its environment.
    const script = (web.command[2] as string).replaceAll(`'${mount.mountPath}/`, `'${volume}/`);
    const app = await new Promise<string>((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', script, process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.env))'], { env: { LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`sh exited ${code}`))));
    });
    const got = JSON.parse(app) as Record<string, string>;
    const eso: Record<string, string> = { DB_PASSWORD: DB.password, GREETING: DB.greeting, DB_JSON: JSON.stringify(DB), API_TOKEN, CERT: DB.multi, LOG_LEVEL: 'info' };
    for (const [k, v] of Object.entries(eso)) assert.equal(got[k], v, k);
  });
});

describe('env file: what it cannot carry is refused, naming the key, never the value', () => {
  const canary = "CANARY-4b1c-it's";
  let dir: string;
  let agent: RunningAgent | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-env-refuse-'));
  });
  after(async () => {
    await stopAgent(agent);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('at render time (run): the env file keeps its last good bytes, the error names the key, the canary is nowhere', async () => {
    await writeFile(join(dir, 'secrets.yaml'), 'db: { password: "good" }\n');
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 300ms }
secrets:
  db: { id: db }
files:
  - { path: creds/DB_PASSWORD, secret: db, key: password }
  - { path: creds/creds.env, envFile: creds }
server: { listen: "" }
`,
    );
    agent = startAgent(['run', '--config', join(dir, 'config.yaml')]);
    await agent.waitFor(/first render complete/);
    const env = join(dir, 'out', 'creds', 'creds.env');
    assert.deepEqual(kubeletParseEnv(await readFile(env), 'DB_PASSWORD', 'quoted'), { value: 'good' });
    await writeFile(join(dir, 'secrets.yaml'), `db: { password: ${JSON.stringify(canary)} }\n`);
    await agent.waitFor(/DB_PASSWORD.*single quote/);
    assert.equal(await readOr(env), "DB_PASSWORD='good'\n", 'the last good env file stays');
    const { stdout, stderr } = agent.output();
    assert.ok(!stdout.includes('CANARY') && !stderr.includes('CANARY'), 'the value is in no log line');
    await waitUntil('the raw file still follows', async () => (await readOr(join(dir, 'out', 'creds', 'DB_PASSWORD'))) === canary);
  });

  it('at validate: a template of the env file\'s directory that always writes a quote is a config error naming the key', async () => {
    await writeFile(join(dir, 'v.yaml'), `outputDir: out\nsecrets: { db: { id: db } }\nfiles:\n  - { path: GREETING, template: "it's {{ secrets.db.x }}" }\n  - { path: e/app.env, envFile: . }\n`);
    const v = await runAgent(['validate', '--config', join(dir, 'v.yaml')]);
    assert.equal(v.code, 2, v.stderr);
    const msg = (JSON.parse(v.stderr.trim().split('\n')[0]!) as { msg: string }).msg;
    assert.match(msg, /v\.yaml:4: files\[0\]\.template: key "GREETING" of the env file "e\/app\.env" \(quoted syntax\) always contains a single quote/);
  });

  it('at convert (inject --from-eso): an ESO template that always writes a quote is not converted, naming the key (exit 1)', async () => {
    const eso = (await readFile(join(FIX, 'eso.yaml'), 'utf8')).replace('    creationPolicy: Owner\n', `    creationPolicy: Owner\n    template:\n      mergePolicy: Merge\n      data:\n        MOTD: "it's {{ .DB_PASSWORD }}"\n`);
    await writeFile(join(dir, 'eso.yaml'), eso);
    const c = await runAgent(['inject', '--from-eso', join(dir, 'eso.yaml'), ...IMAGE, join(FIX, 'deployment.yaml')]);
    assert.equal(c.code, 1, c.stderr);
    assert.match(c.stderr, /not converted: template for key "MOTD" always contains a single quote/);
  });
});
