// `inject` at the level the user sees (the real CLI): every workload kind gets
// the agent; the output validates against the Kubernetes schemas
// (kubernetes-models), has no duplicate volume or container names, keeps every
// unrelated field, is idempotent, and its ConfigMap's config passes `validate`.
// With --from-eso the app reads the same path as before: its mount of the ESO
// Secret is now the agent's volume at the same mountPath, and `init` run with
// the injected config (against moto) writes there the bytes ESO would have.
// Bad input exits 2 naming file and line.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { MAIN, REPO, runAgent, type RunResult } from '../support/cli.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;
const FIX = 'test/fixtures/inject';
const ESO = ['--from-eso', 'examples/eso/secretstore.yaml', '--from-eso', 'examples/eso/externalsecret.yaml'];
const CONFIG = ['--config', 'k8s-examples/kustomize/example/config.yaml'];
const IMAGE = ['--image', 'registry.example.com/tools/secrets-agent:0.1.0'];
const inject = (...args: string[]): Promise<RunResult> => runAgent(['inject', ...args]);
const docsOf = (text: string): Obj[] => parseAllDocuments(text).map((d) => {
  assert.deepEqual(d.errors, []);
  return d.toJS() as Obj;
});

const POD_SPEC: Record<string, string[]> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};
const podSpec = (o: Obj): Obj | undefined => (POD_SPEC[o.kind] ? POD_SPEC[o.kind]!.reduce((v: Obj, k) => v?.[k], o) : undefined);

async function validateSchema(obj: Obj): Promise<void> {
  const mod = (await import(`kubernetes-models/${obj.apiVersion}/${obj.kind}`)) as Record<string, new (d: unknown) => { validate(): void }>;
  new mod[obj.kind]!(obj).validate();
}

/** The manifest with everything inject adds taken out again (the agent container, its volumes and mounts). */
function withoutAgent(o: Obj): Obj {
  const copy = structuredClone(o);
  const spec = podSpec(copy);
  if (!spec) return copy;
  spec.initContainers = (spec.initContainers as Obj[]).filter((c) => c.name !== 'secrets-agent');
  if (spec.initContainers.length === 0) delete spec.initContainers;
  spec.volumes = (spec.volumes as Obj[]).filter((v) => !String(v.name).startsWith('secrets-agent-'));
  if (spec.volumes.length === 0) delete spec.volumes;
  for (const c of spec.containers as Obj[]) {
    c.volumeMounts = (c.volumeMounts as Obj[]).filter((m) => m.name !== 'secrets-agent-files');
    if (c.volumeMounts.length === 0) delete c.volumeMounts;
  }
  return copy;
}

/** Lays out the ConfigMap as the pod sees it (its keys in the mount, the image's templates beside) and runs validate. */
async function validateConfigMap(cm: Obj, dir: string): Promise<RunResult> {
  await mkdir(join(dir, 'config'), { recursive: true });
  await cp(join(REPO, 'templates'), join(dir, 'templates'), { recursive: true });
  for (const [k, v] of Object.entries(cm.data as Record<string, string>)) await writeFile(join(dir, 'config', k), v);
  return runAgent(['validate', '--config', join(dir, 'config', 'config.yaml')]);
}

describe('inject --config: every workload kind', () => {
  let dir: string;
  let r: RunResult;
  let out: Obj[];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-inject-'));
    r = await inject(...CONFIG, ...IMAGE, join(FIX, 'workloads.yaml'));
    out = docsOf(r.stdout);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exits 0 and prints the ConfigMap first, named by its content hash', () => {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(out[0]!.kind, 'ConfigMap');
    assert.match(out[0]!.metadata.name, /^secrets-agent-config-[0-9a-f]{10}$/);
    assert.equal(out[0]!.metadata.namespace, 'shop');
    assert.equal(out.filter((o) => o.kind === 'ConfigMap').length, 1, 'one ConfigMap per namespace');
  });

  it('validates against the Kubernetes schemas (kubernetes-models)', async () => {
    for (const o of out) await validateSchema(o);
  });

  it('adds the agent to every workload: native sidecar, or init for Job and CronJob; no duplicate names', async () => {
    const native = await readFile(join(REPO, 'k8s-examples/native-sidecar.yaml'), 'utf8').then((t) => podSpec(parse(t) as Obj)!.initContainers[0] as Obj);
    const job = await readFile(join(REPO, 'k8s-examples/job.yaml'), 'utf8').then((t) => podSpec(docsOf(t)[0]!)!.initContainers[0] as Obj);
    const kinds = out.filter((o) => POD_SPEC[o.kind]).map((o) => o.kind).sort();
    assert.deepEqual(kinds, ['CronJob', 'DaemonSet', 'Deployment', 'Job', 'Pod', 'ReplicaSet', 'StatefulSet']);
    for (const o of out.filter((x) => POD_SPEC[x.kind])) {
      const spec = podSpec(o)!;
      const agent = spec.initContainers[0] as Obj;
      assert.equal(agent.name, 'secrets-agent', `${o.kind}: the agent runs first`);
      const batch = o.kind === 'Job' || o.kind === 'CronJob';
      const example = batch ? job : native;
      // The examples' shape: command line (--disable-sigusr1), security context, resources, probes.
      assert.deepEqual(agent.securityContext, example.securityContext);
      assert.deepEqual(agent.resources, example.resources);
      assert.ok(agent.command.includes('--disable-sigusr1'));
      if (batch) {
        assert.deepEqual(agent.command, example.command);
        assert.deepEqual(agent.args, example.args);
        assert.equal(agent.restartPolicy, undefined);
      } else {
        assert.equal(agent.restartPolicy, 'Always');
        assert.deepEqual(agent.args, example.args);
        for (const k of ['ports', 'startupProbe', 'readinessProbe', 'livenessProbe']) assert.deepEqual(agent[k], example[k], k);
      }
      const files = (spec.volumes as Obj[]).find((v) => v.name === 'secrets-agent-files')!;
      assert.deepEqual(files.emptyDir, { medium: 'Memory', sizeLimit: '1Mi' });
      assert.equal((spec.volumes as Obj[]).find((v) => v.name === 'secrets-agent-config')!.configMap.name, out[0]!.metadata.name);
      assert.deepEqual(agent.volumeMounts, [
        { name: 'secrets-agent-files', mountPath: '/run/secrets/app' },
        { name: 'secrets-agent-config', mountPath: '/etc/secrets-agent/config', readOnly: true },
      ]);
      for (const c of spec.containers as Obj[]) {
        assert.deepEqual(c.volumeMounts.find((m: Obj) => m.name === 'secrets-agent-files'), { name: 'secrets-agent-files', mountPath: '/run/secrets/app', readOnly: true }, `${o.kind}/${c.name}`);
      }
      const names = (list: Obj[] = []) => list.map((x) => x.name as string);
      const containers = [...names(spec.initContainers), ...names(spec.containers)];
      assert.equal(new Set(containers).size, containers.length, `${o.kind}: duplicate container names ${containers.join(', ')}`);
      assert.equal(new Set(names(spec.volumes)).size, names(spec.volumes).length, `${o.kind}: duplicate volume names`);
    }
  });

  it('keeps every unrelated field and document as it was, in the same order', async () => {
    const input = docsOf(await readFile(join(REPO, FIX, 'workloads.yaml'), 'utf8'));
    assert.deepEqual(out.slice(1).map(withoutAgent), input);
    assert.deepEqual(Object.keys(out[2]!.metadata.annotations), ['zeta', 'alpha']);
    assert.deepEqual(Object.keys(out[2]!.spec.template.spec).slice(0, 4), ['serviceAccountName', 'initContainers', 'containers', 'volumes']);
  });

  it('is idempotent: injecting the output prints it unchanged', async () => {
    await writeFile(join(dir, 'once.yaml'), r.stdout);
    const again = await inject(...CONFIG, ...IMAGE, join(dir, 'once.yaml'));
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, r.stdout);
  });

  it("the ConfigMap's agent config passes validate, laid out as the pod sees it", async () => {
    const v = await validateConfigMap(out[0]!, join(dir, 'pod'));
    assert.equal(v.code, 0, v.stderr);
  });

  it('a template beside the config becomes a key of the ConfigMap', async () => {
    await writeFile(join(dir, 'config.yaml'), 'outputDir: /run/secrets/app\nsecrets: { db: { id: prod/db } }\nfiles:\n  - { path: app.properties, templateFile: app.liquid }\n');
    await writeFile(join(dir, 'app.liquid'), 'password={{ secrets.db.password }}\n');
    const t = await inject('--config', join(dir, 'config.yaml'), ...IMAGE, join(FIX, 'workloads.yaml'));
    assert.equal(t.code, 0, t.stderr);
    const cm = docsOf(t.stdout)[0]!;
    assert.deepEqual(Object.keys(cm.data), ['config.yaml', 'app.liquid']);
    assert.equal((await validateConfigMap(cm, join(dir, 'pod2'))).code, 0);
  });

  it('reads stdin for "-"', async () => {
    const child = spawn(process.execPath, [MAIN, 'inject', ...CONFIG, ...IMAGE, '-'], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stdin.end(await readFile(join(REPO, FIX, 'workloads.yaml')));
    assert.equal(await new Promise((resolve) => child.on('close', resolve)), 0);
    assert.equal(stdout, r.stdout);
  });
});

describe('inject --from-eso: the app reads the same path as before', () => {
  let moto: Moto;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-inject-eso-'));
    await writeFile(join(dir, 'token'), 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    env = agentEnv(moto, join(dir, 'token'));
  });
  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the Secret volume becomes the agent's at the same mountPath; init with the injected config writes ESO's bytes there", async () => {
    const r = await inject(...ESO, ...IMAGE, 'examples/eso/deployment.yaml');
    assert.equal(r.code, 0, r.stderr);
    const [cm, deployment] = docsOf(r.stdout) as [Obj, Obj];
    for (const o of [cm, deployment]) await validateSchema(o);
    const before = podSpec(parse(await readFile(join(REPO, 'examples/eso/deployment.yaml'), 'utf8')) as Obj)!;
    const spec = podSpec(deployment)!;
    const was = (before.containers[0].volumeMounts as Obj[]).find((m) => m.name === 'db-credentials')!;
    const now = (spec.containers[0].volumeMounts as Obj[]).find((m) => m.mountPath === was.mountPath)!;
    // The app's mount at /etc/app-secrets is now the agent's memory volume, the whole of it (one target).
    assert.deepEqual(now, { name: 'secrets-agent-files', mountPath: '/etc/app-secrets', readOnly: true });
    assert.equal((spec.volumes as Obj[]).some((v) => v.secret), false, 'no Secret volume left');
    assert.equal((spec.volumes as Obj[]).find((v) => v.name === now.name)!.emptyDir.medium, 'Memory');
    const agentMount = (spec.initContainers[0].volumeMounts as Obj[]).find((m) => m.name === now.name)!;
    // Unrelated fields kept.
    assert.deepEqual(spec.securityContext, before.securityContext);
    assert.deepEqual(spec.containers[0].ports, before.containers[0].ports);
    assert.equal((await validateConfigMap(cm, join(dir, 'pod'))).code, 0);

    // ESO would write DB_PASSWORD = the "password" property (gjson String()), DB_USER = "username".
    await moto.sm('CreateSecret', { Name: 'prod/shop/db', SecretString: '{"username":"app","password":"p@ss w\\"rd\\n","port":5432}' });
    const config = parse(cm.data['config.yaml'] as string) as Obj;
    assert.equal(config.outputDir, agentMount.mountPath, 'the agent writes where its volume is mounted');
    const volume = join(dir, 'volume');
    await writeFile(join(dir, 'config.yaml'), (cm.data['config.yaml'] as string).replace(`outputDir: ${config.outputDir}`, `outputDir: ${volume}`));
    const init = await runAgent(['init', '--config', join(dir, 'config.yaml'), '--timeout', '20s'], { env });
    assert.equal(init.code, 0, init.stderr);
    // The file the app reads at <mountPath>/<key>: the same place on the volume (no subPath), so <outputDir>/<key>.
    const onVolume = (appPath: string) => join(volume, ((now as Obj).subPath as string | undefined) ?? '', relative(now.mountPath, appPath));
    assert.equal(await readFile(onVolume(posix.join(was.mountPath, 'DB_PASSWORD')), 'utf8'), 'p@ss w"rd\n');
    assert.equal(await readFile(onVolume(posix.join(was.mountPath, 'DB_USER')), 'utf8'), 'app');

    // Idempotent with --from-eso too.
    await writeFile(join(dir, 'once.yaml'), r.stdout);
    const again = await inject(...ESO, ...IMAGE, join(dir, 'once.yaml'));
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, r.stdout);
  });

  it('several targets: each mounted with subPath: <target> at its path; env and envFrom of a target read its env file (fileKeyRef)', async () => {
    const r = await inject('--from-eso', join(FIX, 'eso-several.yaml'), ...IMAGE, join(FIX, 'pod-several.yaml'));
    assert.equal(r.code, 0, r.stderr);
    const pod = docsOf(r.stdout).find((o) => o.kind === 'Pod')!;
    await validateSchema(pod);
    assert.deepEqual(pod.spec.containers[0].volumeMounts, [
      { name: 'secrets-agent-files', mountPath: '/etc/db', readOnly: true, subPath: 'db' },
      { name: 'secrets-agent-files', mountPath: '/etc/api', readOnly: true, subPath: 'api-key' },
    ]);
    assert.deepEqual(pod.spec.volumes.map((v: Obj) => v.name), ['secrets-agent-files', 'secrets-agent-config']);
    assert.equal(pod.spec.containers[0].envFrom, undefined);
    assert.deepEqual(pod.spec.containers[0].env, [
      { name: 'key', valueFrom: { fileKeyRef: { volumeName: 'secrets-agent-files', path: 'api-key/api-key.env', key: 'key' } } },
      { name: 'DB_PASSWORD', valueFrom: { fileKeyRef: { volumeName: 'secrets-agent-files', path: 'db/db.env', key: 'password' } } },
    ]);
    // Each env file is in its target's directory: part of that target's generation.
    const config = parse(docsOf(r.stdout)[0]!.data['config.yaml'] as string) as Obj;
    assert.deepEqual(config.files.filter((f: Obj) => f.envFile), [
      { path: 'db/db.env', envFile: 'db', mode: '0444' },
      { path: 'api-key/api-key.env', envFile: 'api-key', mode: '0444' },
    ]);
  });
});

describe('inject: bad input exits 2 naming file and line', () => {
  for (const [args, where, what] of [
    [[...CONFIG, join(FIX, 'bad/broken.yaml')], 'bad/broken.yaml:4', /YAML syntax error/],
    [[...CONFIG, join(FIX, 'bad/configmap.yaml')], 'bad/configmap.yaml:2', /ConfigMap is not a workload/],
    [['--from-eso', 'test/fixtures/eso/bad/no-store.yaml', 'examples/eso/deployment.yaml'], 'bad/no-store.yaml:6', /the SecretStore "missing" it names is not in the input/],
  ] as const) {
    it(`${where}`, async () => {
      const r = await inject(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`${where.replace('.', '\\.')}: error: `));
      assert.match(r.stderr, what);
    });
  }

  it('neither or both of --config and --from-eso: a usage error', async () => {
    assert.equal((await inject('examples/eso/deployment.yaml')).code, 2);
    assert.equal((await inject(...CONFIG, ...ESO, 'examples/eso/deployment.yaml')).code, 2);
  });
});
