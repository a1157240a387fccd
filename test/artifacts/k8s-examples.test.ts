// k8s-examples/ is what users copy, so every document in it is checked as the
// API server and the agent would check it:
// - each Kubernetes object validates against the API schemas (kubernetes-models'
//   validators, plus unknown-field detection from the same models' types, as
//   `kubectl apply` does with server-side strict field validation);
// - kustomizations are rendered with the real `kubectl kustomize` and their
//   output validated the same way; their own files are checked structurally;
// - every agent config in a ConfigMap is laid out as the pod sees it (the
//   ConfigMap's keys in its mount directory, the image's templates in
//   /etc/secrets-agent/templates) and passes `secrets-agent validate`, run
//   through the real CLI;
// - the pod wiring around the agent holds (config mount, output volume,
//   probes, signal permissions, security context, resources);
// - the webhook base (webhook/) excludes kube-system and its own namespace,
//   selects opted-in pods only, and runs hardened with no API access;
// - the IAM documents are the right ones (IRSA trusts the cluster's OIDC
//   provider with sub and aud, never the eks.amazonaws.com service; least
//   privilege on exactly the secrets the configs use).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, cp, glob, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ts from 'typescript';
import { parse, parseAllDocuments } from 'yaml';
import { AGENT_RESOURCES } from '../../agent/deploy.ts';
import { REPO, installedNameDir, runAgent } from '../support/cli.ts';
import { startMoto } from '../support/moto.ts';

const EXAMPLES = join(REPO, 'k8s-examples');
/** Where the image puts the ready-made templates (Dockerfile: COPY templates/*.liquid). */
const IMAGE_TEMPLATES = '/etc/secrets-agent/templates';

// Parsed YAML/JSON of many shapes, walked dynamically and checked by assertions.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

interface Doc {
  file: string; // relative to k8s-examples/
  index: number;
  value: unknown;
}

const where = (d: Doc): string => `${d.file}#${d.index}`;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const mine = (file: string): boolean => !file.startsWith('monitoring/');

async function loadDocs(): Promise<Doc[]> {
  const docs: Doc[] = [];
  for await (const abs of glob('**/*.yaml', { cwd: EXAMPLES })) {
    const file = abs.split('\\').join('/');
    const text = await readFile(join(EXAMPLES, file), 'utf8');
    parseAllDocuments(text).forEach((d, index) => {
      assert.deepEqual(d.errors, [], `${file}#${index}: YAML errors`);
      if (d.contents !== null) docs.push({ file, index, value: d.toJS() });
    });
  }
  return docs.sort((a, b) => where(a).localeCompare(where(b)));
}

// ---------------------------------------------------------------------------
// Schema validation: kubernetes-models' JSON-schema validators + unknown fields.

const MODEL_PACKAGES: Record<string, string> = { 'monitoring.coreos.com': '@kubernetes-models/prometheus-operator', 'cert-manager.io': '@kubernetes-models/cert-manager' };

function modelModule(apiVersion: string, kind: string): string {
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
  const pkg = MODEL_PACKAGES[group] ?? 'kubernetes-models';
  return `${pkg}/${apiVersion}/${kind}`;
}

/** Throws with the schema errors when `obj` is not a valid object of its kind. */
async function validateSchema(obj: Obj): Promise<void> {
  const mod = (await import(modelModule(obj.apiVersion as string, obj.kind as string))) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = mod[obj.kind as string];
  assert.ok(Model, `no model for ${obj.apiVersion}/${obj.kind}`);
  new Model(obj).validate();
}

/**
 * Finds fields the API does not know (a typo like `volumeMount:` passes the JSON
 * schemas, which allow extra properties, but the API server rejects it under
 * strict field validation). Walks the object alongside the models' TypeScript
 * types, which list every field of every kind.
 */
class UnknownFields {
  readonly #checker: ts.TypeChecker;
  readonly #types = new Map<string, ts.Type>();

  constructor(kinds: ReadonlyArray<{ apiVersion: string; kind: string }>) {
    const virtual = join(REPO, 'test', '__k8s_model_types__.ts');
    const unique = [...new Map(kinds.map((k) => [`${k.apiVersion}/${k.kind}`, k])).values()];
    const source = unique
      .map((k, i) => `import type { I${k.kind} as T${i} } from '${modelModule(k.apiVersion, k.kind)}';\nexport declare const t${i}: T${i};\n`)
      .join('');
    const options: ts.CompilerOptions = {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    const read = host.readFile.bind(host);
    host.getSourceFile = (f, lang, ...rest) => (f === virtual ? ts.createSourceFile(f, source, lang) : getSourceFile(f, lang, ...rest));
    host.fileExists = (f) => f === virtual || fileExists(f);
    host.readFile = (f) => (f === virtual ? source : read(f));
    const program = ts.createProgram([virtual], options, host);
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    assert.deepEqual(problems, [], 'the kubernetes-models types must load');
    this.#checker = program.getTypeChecker();
    const exports = this.#checker.getExportsOfModule(this.#checker.getSymbolAtLocation(program.getSourceFile(virtual)!)!);
    unique.forEach((k, i) => {
      const sym = exports.find((e) => e.name === `t${i}`)!;
      this.#types.set(`${k.apiVersion}/${k.kind}`, this.#checker.getTypeOfSymbol(sym));
    });
  }

  find(obj: Obj): string[] {
    const type = this.#types.get(`${obj.apiVersion}/${obj.kind}`);
    assert.ok(type, `no type for ${obj.apiVersion}/${obj.kind}`);
    const found: string[] = [];
    this.#walk(obj, type, '', found);
    return found;
  }

  #walk(value: unknown, declared: ts.Type, path: string, found: string[]): void {
    if (typeof value !== 'object' || value === null) return; // scalars: the JSON schema checks their types
    let type = this.#checker.getNonNullableType(declared);
    if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
    if (type.isUnion()) {
      const objects = type.types.filter((t) => t.flags & ts.TypeFlags.Object);
      if (objects.length !== 1) return; // e.g. IntOrString
      type = objects[0]!;
    }
    if (Array.isArray(value)) {
      const element = type.getNumberIndexType();
      if (element) value.forEach((v, i) => this.#walk(v, element, `${path}[${i}]`, found));
      return;
    }
    const props = type.getProperties();
    if (props.length === 0) return; // a map (labels, data ...) or an open object
    for (const [key, v] of Object.entries(value)) {
      const prop = type.getProperty(key);
      if (!prop) {
        found.push(`${path}.${key}`.replace(/^\./, ''));
        continue;
      }
      this.#walk(v, this.#checker.getTypeOfSymbol(prop), `${path}.${key}`, found);
    }
  }
}

// ---------------------------------------------------------------------------
// Kustomize: kinds that are not API objects, checked structurally.

const KUSTOMIZE_GROUP = 'kustomize.config.k8s.io';
const KUSTOMIZE_KEYS = new Set([
  'apiVersion', 'kind', 'metadata', 'namespace', 'namePrefix', 'nameSuffix', 'labels', 'commonLabels', 'commonAnnotations',
  'resources', 'components', 'patches', 'configMapGenerator', 'secretGenerator', 'generatorOptions', 'images', 'replicas',
  'replacements', 'configurations', 'crds', 'generators', 'transformers', 'validators', 'openapi', 'buildMetadata', 'sortOptions',
]);

const isKustomize = (v: unknown): v is Obj => isObj(v) && typeof v.apiVersion === 'string' && v.apiVersion.startsWith(`${KUSTOMIZE_GROUP}/`);

/** Structural check of a Kustomization/Component; returns the files it uses as patches and generator inputs. */
async function checkKustomization(doc: Doc): Promise<{ patchFiles: string[]; generatorFiles: string[] }> {
  const k = doc.value as Obj;
  const dir = posix.dirname(doc.file);
  const expected = k.kind === 'Component' ? `${KUSTOMIZE_GROUP}/v1alpha1` : `${KUSTOMIZE_GROUP}/v1beta1`;
  assert.ok(['Kustomization', 'Component'].includes(k.kind as string), `${where(doc)}: kind ${k.kind}`);
  assert.equal(k.apiVersion, expected, `${where(doc)}: apiVersion of a ${k.kind}`);
  for (const key of Object.keys(k)) assert.ok(KUSTOMIZE_KEYS.has(key), `${where(doc)}: unknown kustomize field ${key}`);
  const exists = async (rel: string, what: string) => {
    const abs = join(EXAMPLES, dir, rel);
    assert.ok(abs.startsWith(EXAMPLES), `${where(doc)}: ${what} ${rel} leaves k8s-examples/`);
    await readdir(dirname(abs)).then((names) => assert.ok(names.includes(posix.basename(rel)), `${where(doc)}: ${what} ${rel} does not exist`));
  };
  for (const r of (k.resources ?? []) as string[]) await exists(r, 'resource');
  for (const c of (k.components ?? []) as string[]) await exists(posix.join(c, 'kustomization.yaml'), 'component');
  const patchFiles: string[] = [];
  for (const p of (k.patches ?? []) as Obj[]) {
    assert.ok(typeof p.path === 'string' || typeof p.patch === 'string', `${where(doc)}: a patch needs path or patch`);
    if (p.target !== undefined) {
      for (const key of Object.keys(p.target as Obj)) {
        assert.ok(['group', 'version', 'kind', 'name', 'namespace', 'labelSelector', 'annotationSelector'].includes(key), `${where(doc)}: patch target field ${key}`);
      }
    }
    if (typeof p.path === 'string') {
      await exists(p.path, 'patch');
      patchFiles.push(posix.join(dir, p.path));
    }
  }
  const generatorFiles: string[] = [];
  for (const g of (k.configMapGenerator ?? []) as Obj[]) {
    assert.equal(typeof g.name, 'string', `${where(doc)}: configMapGenerator needs a name`);
    for (const f of (g.files ?? []) as string[]) {
      const rel = f.includes('=') ? f.split('=')[1]! : f;
      await exists(rel, 'generator file');
      generatorFiles.push(posix.join(dir, rel));
    }
  }
  return { patchFiles, generatorFiles };
}

function kubectlKustomize(dir: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  // kubectl ships with this machine image (and CI runs on it): a missing one is a failure, not a skip.
  assert.equal(r.error, undefined, `kubectl is needed to render kustomizations: ${String(r.error)}`);
  assert.equal(r.status, 0, `kubectl kustomize ${dir}:\n${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
}

// ---------------------------------------------------------------------------
// Pods that run the agent.

interface AgentContainer {
  source: string; // where it was found
  pod: Obj; // pod spec
  container: Obj;
  init: boolean; // in initContainers
  command: string;
  configPath: string;
  configMaps: Obj[]; // the ConfigMaps visible where the pod is defined
}

function podSpecs(obj: Obj): Obj[] {
  switch (obj.kind) {
    case 'Pod':
      return [obj.spec as Obj];
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
      return [obj.spec.template.spec as Obj];
    case 'CronJob':
      return [obj.spec.jobTemplate.spec.template.spec as Obj];
    default:
      return [];
  }
}

function agentContainers(source: string, objs: Obj[], configMaps: Obj[]): AgentContainer[] {
  const out: AgentContainer[] = [];
  for (const obj of objs) {
    for (const pod of podSpecs(obj)) {
      for (const [list, init] of [[pod.initContainers, true], [pod.containers, false]] as const) {
        for (const container of (list ?? []) as Obj[]) {
          if (!/secrets-agent/.test(String(container.image))) continue;
          const args = (container.args ?? []) as string[];
          // The admission webhook runs the same image without a config (k8s-examples/webhook).
          if (args[0] === 'webhook') continue;
          const i = args.findIndex((a) => a === '--config' || a.startsWith('--config='));
          const configPath = i < 0 ? '/etc/secrets-agent/config.yaml' : args[i]!.startsWith('--config=') ? args[i]!.slice(9) : args[i + 1]!;
          out.push({ source: `${source} ${obj.kind}/${obj.metadata?.name} ${container.name}`, pod, container, init, command: args[0] ?? 'run', configPath, configMaps });
        }
      }
    }
  }
  return out;
}

const volumeAt = (a: AgentContainer, mountPath: string): Obj | undefined => {
  const mount = ((a.container.volumeMounts ?? []) as Obj[]).find((m) => m.mountPath === mountPath);
  return mount && ((a.pod.volumes ?? []) as Obj[]).find((v) => v.name === mount.name);
};

// ---------------------------------------------------------------------------

describe('k8s-examples', () => {
  let docs: Doc[];
  let apiObjects: Array<{ doc: string; obj: Obj }>;
  let agents: AgentContainer[];
  let work: string;
  const kustomizeFiles = new Set<string>();

  before(async () => {
    docs = await loadDocs();
    work = await mkdtemp(join(tmpdir(), 'sa-k8s-examples-'));
    // Files a kustomization uses as patches or generator input are not objects on their own.
    for (const d of docs.filter((x) => isKustomize(x.value))) {
      const { patchFiles, generatorFiles } = await checkKustomization(d);
      for (const f of [...patchFiles, ...generatorFiles]) kustomizeFiles.add(f);
    }
    apiObjects = docs
      .filter((d) => !isKustomize(d.value) && !kustomizeFiles.has(d.file) && isObj(d.value) && 'apiVersion' in d.value)
      .map((d) => ({ doc: where(d), obj: d.value as Obj }));
    // Rendered kustomizations join the objects to validate.
    for (const d of docs.filter((x) => isKustomize(x.value) && x.value.kind === 'Kustomization')) {
      for (const obj of kubectlKustomize(join(EXAMPLES, posix.dirname(d.file)))) apiObjects.push({ doc: `kubectl kustomize ${posix.dirname(d.file)}`, obj });
    }
    // ConfigMaps are looked up where the pod is defined: in its own render for
    // a kustomization (names get a hash), else among every example file.
    const plainConfigMaps = apiObjects.filter((o) => !o.doc.startsWith('kubectl') && o.obj.kind === 'ConfigMap').map((o) => o.obj);
    agents = [];
    const bySource = new Map<string, Obj[]>();
    for (const o of apiObjects) bySource.set(o.doc.split('#')[0]!, [...(bySource.get(o.doc.split('#')[0]!) ?? []), o.obj]);
    for (const [source, objs] of bySource) {
      const rendered = source.startsWith('kubectl');
      agents.push(...agentContainers(source, objs, rendered ? objs.filter((o) => o.kind === 'ConfigMap') : plainConfigMaps));
    }
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('when read, every YAML document is accounted for: an API object, a kustomize file, or a promtool test', () => {
    for (const d of docs) {
      if (isKustomize(d.value) || kustomizeFiles.has(d.file)) continue;
      if (isObj(d.value) && 'apiVersion' in d.value) {
        assert.equal(typeof d.value.kind, 'string', `${where(d)}: kind`);
        continue;
      }
      // promtool's rule unit tests (monitoring/tests/*.test.yaml) are not Kubernetes objects.
      assert.ok(/\.test\.yaml$/.test(d.file) && isObj(d.value) && Array.isArray(d.value.rule_files) && Array.isArray(d.value.tests), `${where(d)}: not a Kubernetes object, kustomize file or promtool test`);
    }
    for (const f of ['init-container.yaml', 'job.yaml', 'native-sidecar.yaml', 'classic-sidecar-nginx.yaml', 'serviceaccount-irsa.yaml', 'configmap.yaml']) {
      assert.ok(docs.some((d) => d.file === f), `${f} exists`);
    }
  });

  it('validates every Kubernetes object against the API schemas, rendered kustomizations included', async () => {
    const failures: string[] = [];
    for (const { doc, obj } of apiObjects) {
      try {
        await validateSchema(obj);
      } catch (err) {
        failures.push(`${doc} ${obj.kind}/${obj.metadata?.name}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(failures, []);
    const kinds = new Set(apiObjects.map((o) => o.obj.kind as string));
    for (const k of ['Deployment', 'Job', 'CronJob', 'ConfigMap', 'ServiceAccount', 'PodMonitor', 'PrometheusRule', 'MutatingWebhookConfiguration', 'Certificate', 'PodDisruptionBudget']) assert.ok(kinds.has(k), `an example of ${k}`);
  });

  it('has no field the API server would reject as unknown (strict field validation)', () => {
    const unknown = new UnknownFields(apiObjects.map((o) => ({ apiVersion: o.obj.apiVersion as string, kind: o.obj.kind as string })));
    const found = apiObjects.flatMap(({ doc, obj }) => unknown.find(obj).map((f) => `${doc} ${obj.kind}/${obj.metadata?.name}: ${f}`));
    assert.deepEqual(found, []);
    // The check itself: a misspelt field is caught.
    const typo = { apiVersion: 'apps/v1', kind: 'Deployment', spec: { template: { spec: { containers: [{ name: 'x', volumeMount: [] }] } } } };
    assert.deepEqual(unknown.find(typo), ['spec.template.spec.containers[0].volumeMount']);
  });

  it('passes the API server\'s checks the schemas do not express: mounts name volumes, named probe ports exist, no probes on plain init containers, unique names', () => {
    for (const { doc, obj } of apiObjects) {
      for (const pod of podSpecs(obj)) {
        const ctx = `${doc} ${obj.kind}/${obj.metadata?.name}`;
        const volumes = ((pod.volumes ?? []) as Obj[]).map((v) => v.name as string);
        assert.equal(new Set(volumes).size, volumes.length, `${ctx}: duplicate volume names`);
        const all = [...((pod.initContainers ?? []) as Obj[]), ...((pod.containers ?? []) as Obj[])];
        const names = all.map((c) => c.name as string);
        assert.equal(new Set(names).size, names.length, `${ctx}: duplicate container names`);
        for (const c of all) {
          for (const m of (c.volumeMounts ?? []) as Obj[]) assert.ok(volumes.includes(m.name as string), `${ctx} ${c.name}: volumeMount ${m.name} names no volume`);
          const ports = ((c.ports ?? []) as Obj[]).map((p) => p.name as string | undefined);
          for (const p of ports) if (p !== undefined) assert.match(p, /^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/, `${ctx} ${c.name}: port name ${p}`);
          for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
            const port = (c[probe] as Obj | undefined)?.httpGet?.port;
            if (typeof port === 'string') assert.ok(ports.includes(port), `${ctx} ${c.name}: ${probe} port ${port} is not a named port`);
          }
        }
        for (const c of (pod.initContainers ?? []) as Obj[]) {
          if (c.restartPolicy === 'Always') continue;
          for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.equal(c[probe], undefined, `${ctx} ${c.name}: a plain init container cannot have a ${probe}`);
        }
      }
    }
  });

  it('when the kustomize component patches a Deployment, the sidecar, its volumes and the app mount are all there', () => {
    const rendered = apiObjects.filter((o) => o.doc.startsWith('kubectl kustomize kustomize/') && o.obj.kind === 'Deployment');
    assert.ok(rendered.length > 0);
    for (const { obj } of rendered) {
      const pod = obj.spec.template.spec as Obj;
      const sidecar = (pod.initContainers as Obj[]).find((c) => c.name === 'secrets-agent');
      assert.equal(sidecar?.restartPolicy, 'Always');
      assert.ok((pod.containers[0].volumeMounts as Obj[]).some((m) => m.name === 'secrets-agent-files' && m.readOnly === true));
      const cm = (pod.volumes as Obj[]).find((v) => v.name === 'secrets-agent-config')?.configMap?.name as string;
      assert.match(cm, /^secrets-agent-config-[a-z0-9]{10}$/, 'points at the generated ConfigMap');
    }
  });

  it('the webhook base: excludes kube-system and its own namespace, selects opted-in pods, fails closed within 5 s; 2 replicas, PDB, anti-affinity, hardened, no token', () => {
    const objs = apiObjects.filter((o) => o.doc === 'kubectl kustomize webhook').map((o) => o.obj);
    const byKind = (kind: string): Obj => {
      const found = objs.filter((o) => o.kind === kind);
      assert.equal(found.length, 1, `one ${kind} in the webhook base`);
      return found[0]!;
    };
    const ns = byKind('Namespace').metadata.name as string;
    for (const o of objs) if (o.kind !== 'Namespace' && o.kind !== 'MutatingWebhookConfiguration') assert.equal(o.metadata.namespace, ns, `${o.kind} in ${ns}`);
    const [hook, ...more] = byKind('MutatingWebhookConfiguration').webhooks as Obj[];
    assert.equal(more.length, 0);
    const excluded = (hook!.namespaceSelector.matchExpressions as Obj[]).find((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn');
    assert.deepEqual([...(excluded?.values as string[])].sort(), ['kube-system', ns].sort(), 'kube-system and the webhook\'s own namespace are excluded');
    assert.deepEqual(hook!.objectSelector, { matchLabels: { 'secrets-agent.io/inject': 'true' } });
    assert.deepEqual(hook!.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
    assert.deepEqual(hook!.admissionReviewVersions, ['v1']);
    assert.equal(hook!.failurePolicy, 'Fail');
    assert.equal(hook!.sideEffects, 'None');
    assert.ok(hook!.timeoutSeconds <= 10);
    const service = byKind('Service');
    assert.deepEqual({ ...hook!.clientConfig.service }, { name: service.metadata.name, namespace: ns, path: '/mutate', port: service.spec.ports[0].port });
    const certificate = byKind('Certificate');
    assert.ok((certificate.spec.dnsNames as string[]).includes(`${service.metadata.name}.${ns}.svc`), 'the name the API server calls');
    assert.equal(byKind('MutatingWebhookConfiguration').metadata.annotations['cert-manager.io/inject-ca-from'], `${ns}/${certificate.metadata.name}`);
    const deployment = byKind('Deployment');
    assert.equal(deployment.spec.replicas, 2);
    assert.equal(byKind('PodDisruptionBudget').spec.minAvailable, 1);
    const pod = deployment.spec.template.spec as Obj;
    assert.ok(pod.affinity.podAntiAffinity, 'anti-affinity');
    assert.equal(pod.automountServiceAccountToken, false, 'no API access, no token');
    assert.equal(byKind('ServiceAccount').automountServiceAccountToken, false);
    assert.ok(!objs.some((o) => /Role/.test(o.kind as string)), 'no RBAC');
    const c = pod.containers[0] as Obj;
    assert.equal(c.args[0], 'webhook');
    const tls = (pod.volumes as Obj[]).find((v) => v.secret?.secretName === certificate.spec.secretName);
    assert.ok(tls, 'the certificate\'s Secret is mounted');
    const mount = (c.volumeMounts as Obj[]).find((m) => m.name === tls.name)!.mountPath as string;
    assert.ok((c.args as string[]).includes(`--tls-cert-file=${mount}/tls.crt`) && (c.args as string[]).includes(`--tls-private-key-file=${mount}/tls.key`));
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.deepEqual(c.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, 'measured resources');
  });

  it('finds the agent in every example that should run it', () => {
    const sources = new Set(agents.map((a) => a.source.split(' ')[0]));
    for (const f of ['init-container.yaml', 'native-sidecar.yaml', 'job.yaml', 'classic-sidecar-nginx.yaml', 'kubectl']) assert.ok([...sources].some((s) => s?.startsWith(f)), `agent in ${f}`);
  });

  it('passes `secrets-agent validate` (the real CLI) for every agent config, laid out as the pod sees it', async () => {
    const seen = new Map<string, string>();
    let n = 0;
    for (const a of agents) {
      const configDir = posix.dirname(a.configPath);
      const volume = volumeAt(a, configDir);
      assert.ok(volume?.configMap, `${a.source}: --config ${a.configPath}: no ConfigMap mounted at ${configDir}`);
      const cm = a.configMaps.find((c) => c.metadata?.name === volume.configMap.name);
      assert.ok(cm, `${a.source}: ConfigMap ${volume.configMap.name} not found`);
      assert.ok(posix.basename(a.configPath) in (cm.data ?? {}), `${a.source}: ConfigMap ${cm.metadata.name} has no key ${posix.basename(a.configPath)}`);
      const key = JSON.stringify([cm.data, a.configPath]);
      if (seen.has(key)) continue;
      // The pod's filesystem, under a temp root: ConfigMap keys in the mount dir, the image's templates.
      const root = join(work, `pod-${n++}`);
      await mkdir(join(root, configDir), { recursive: true });
      for (const [k, v] of Object.entries(cm.data as Record<string, string>)) await writeFile(join(root, configDir, k), v);
      await mkdir(join(root, IMAGE_TEMPLATES), { recursive: true });
      for (const t of await readdir(join(REPO, 'templates'))) if (t.endsWith('.liquid')) await copyFile(join(REPO, 'templates', t), join(root, IMAGE_TEMPLATES, t));
      const r = await runAgent(['validate', '--config', join(root, a.configPath)]);
      assert.equal(r.code, 0, `${a.source}: validate failed:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /: ok \(/);
      seen.set(key, a.source);
    }
    assert.ok(seen.size >= 3, `validated ${seen.size} distinct configs`);
  });

  it('wires every agent container: config mount, output volume in memory and shared with the app, probes, signal rights', () => {
    for (const a of agents) {
      const cm = a.configMaps.find((c) => c.metadata?.name === volumeAt(a, posix.dirname(a.configPath))?.configMap?.name)!;
      const config = parse(cm.data[posix.basename(a.configPath)] as string) as Obj;
      const ctx = a.source;
      // The agent writes outputDir: a writable mount of an in-memory emptyDir with a size limit.
      const outMount = ((a.container.volumeMounts ?? []) as Obj[]).find((m) => m.mountPath === config.outputDir);
      assert.ok(outMount && outMount.readOnly !== true, `${ctx}: outputDir ${config.outputDir} must be a writable mount`);
      const out = volumeAt(a, config.outputDir as string)!;
      assert.equal(out.emptyDir?.medium, 'Memory', `${ctx}: outputDir on tmpfs (emptyDir medium: Memory)`);
      assert.ok(out.emptyDir?.sizeLimit, `${ctx}: emptyDir sizeLimit`);
      // Some other container reads it, read-only.
      const readers = ((a.pod.containers ?? []) as Obj[]).filter((c) => c !== a.container && !/secrets-agent/.test(String(c.image)));
      assert.ok(
        readers.some((c) => ((c.volumeMounts ?? []) as Obj[]).some((m) => m.name === outMount.name && m.readOnly === true)),
        `${ctx}: the app mounts the files read-only`,
      );
      assert.ok(['init', 'run'].includes(a.command), `${ctx}: command ${a.command}`);
      if (a.init && a.container.restartPolicy !== 'Always') assert.equal(a.command, 'init', `${ctx}: a plain init container must run init (run never exits)`);
      if (!a.init || a.container.restartPolicy === 'Always') {
        assert.equal(a.command, 'run', `${ctx}: a sidecar runs run`);
        const port = Number(String(config.server?.listen ?? '0.0.0.0:9102').split(':').at(-1));
        const ports = ((a.container.ports ?? []) as Obj[]).filter((p) => p.containerPort === port);
        assert.equal(ports.length, 1, `${ctx}: containerPort ${port} (server.listen)`);
        const probePort = (p: Obj | undefined) => p?.httpGet?.port;
        const matches = (p: Obj | undefined, path: string) => p?.httpGet?.path === path && [port, ports[0]!.name].includes(probePort(p));
        if (a.init) assert.ok(matches(a.container.startupProbe as Obj, '/readyz'), `${ctx}: native sidecar needs a startupProbe on /readyz`);
        // Readiness is optional (the startupProbe gates the app); when present it is /readyz. Ours always have it.
        if (a.container.readinessProbe !== undefined || mine(ctx)) assert.ok(matches(a.container.readinessProbe as Obj, '/readyz'), `${ctx}: readinessProbe on /readyz`);
        assert.ok(matches(a.container.livenessProbe as Obj, '/healthz'), `${ctx}: livenessProbe on /healthz`);
      }
      // signal notify: a shared process namespace and the same UID as some other container.
      const signals = ((config.notify ?? []) as Obj[]).filter((t) => t.signal !== undefined);
      if (signals.length > 0 && a.command === 'run') {
        assert.equal(a.pod.shareProcessNamespace, true, `${ctx}: notify signal needs shareProcessNamespace: true`);
        const uid = (c: Obj) => c.securityContext?.runAsUser ?? a.pod.securityContext?.runAsUser;
        assert.ok(uid(a.container) !== undefined && readers.some((c) => uid(c) === uid(a.container)), `${ctx}: the agent must run as the UID of the process it signals`);
      }
    }
  });

  it('locks down every agent container in our examples: non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp, resources as AGENT_RESOURCES', () => {
    for (const a of agents.filter((x) => mine(x.source) || x.source.startsWith('kubectl'))) {
      const sc = (a.container.securityContext ?? {}) as Obj;
      const pod = (a.pod.securityContext ?? {}) as Obj;
      const ctx = a.source;
      assert.ok(sc.runAsNonRoot === true || pod.runAsNonRoot === true, `${ctx}: runAsNonRoot`);
      const uid = sc.runAsUser ?? pod.runAsUser;
      assert.ok(uid === undefined || uid > 0, `${ctx}: runAsUser`);
      assert.equal(sc.readOnlyRootFilesystem, true, `${ctx}: readOnlyRootFilesystem`);
      assert.equal(sc.allowPrivilegeEscalation, false, `${ctx}: allowPrivilegeEscalation`);
      assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${ctx}: drop ALL`);
      assert.equal(sc.capabilities?.add, undefined, `${ctx}: no added capabilities`);
      assert.equal((sc.seccompProfile ?? pod.seccompProfile)?.type, 'RuntimeDefault', `${ctx}: seccomp`);
      // The one place the agent's resources live (set from `npm run bench:image`, docs/performance.md, Resources); inject uses it too.
      assert.deepEqual(a.container.resources, AGENT_RESOURCES, `${ctx}: resources as agent/deploy.ts AGENT_RESOURCES`);
      // Group-readable files need the app in the files' group (fsGroup), unless it is the same UID.
      const cm = a.configMaps.find((c) => c.metadata?.name === volumeAt(a, posix.dirname(a.configPath))?.configMap?.name)!;
      const config = parse(cm.data[posix.basename(a.configPath)] as string) as Obj;
      if (((config.files ?? []) as Obj[]).some((f) => f.mode !== undefined && (parseInt(String(f.mode), 8) & 0o040) !== 0)) {
        assert.ok(pod.fsGroup !== undefined, `${ctx}: mode with group read needs the pod's fsGroup`);
      }
    }
  });

  describe('IAM', () => {
    const iam = async (name: string) => JSON.parse(await readFile(join(EXAMPLES, 'iam', name), 'utf8')) as Obj;
    const serviceAccount = () => apiObjects.find((o) => o.doc.startsWith('serviceaccount-irsa.yaml') && o.obj.kind === 'ServiceAccount')!.obj;
    const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);

    it('parses every JSON document in iam/', async () => {
      const names = (await readdir(join(EXAMPLES, 'iam'))).filter((f) => f.endsWith('.json'));
      assert.deepEqual(names.sort(), ['iam-policy-batch-checks.json', 'iam-policy.json', 'irsa-trust-policy.json', 'pod-identity-trust-policy.json']);
      for (const n of names) assert.equal((await iam(n)).Version, '2012-10-17', n);
    });

    it('IRSA: trusts the cluster OIDC provider (Federated) for exactly this ServiceAccount (sub) and STS (aud), never the eks.amazonaws.com service', async () => {
      const policy = await iam('irsa-trust-policy.json');
      const text = JSON.stringify(policy);
      assert.doesNotMatch(text, /"eks\.amazonaws\.com"/, 'the tutorial mistake: trusting the EKS service instead of the OIDC provider');
      assert.equal(policy.Statement.length, 1);
      const s = policy.Statement[0] as Obj;
      assert.equal(s.Effect, 'Allow');
      assert.deepEqual(Object.keys(s.Principal as Obj), ['Federated']);
      const m = /^arn:aws:iam::(\d{12}):oidc-provider\/(oidc\.eks\.[a-z0-9-]+\.amazonaws\.com\/id\/[A-Z0-9]+)$/.exec(s.Principal.Federated as string);
      assert.ok(m, `Federated principal is an EKS OIDC provider ARN: ${s.Principal.Federated}`);
      const provider = m[2]!;
      assert.deepEqual(asList(s.Action), ['sts:AssumeRoleWithWebIdentity']);
      assert.deepEqual(Object.keys(s.Condition as Obj), ['StringEquals'], 'exact match (StringLike with * would admit any ServiceAccount)');
      const sa = serviceAccount();
      assert.deepEqual(s.Condition.StringEquals, {
        [`${provider}:sub`]: `system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}`,
        [`${provider}:aud`]: 'sts.amazonaws.com',
      });
      // The ServiceAccount's role lives in the same account as the OIDC provider.
      assert.match(sa.metadata.annotations['eks.amazonaws.com/role-arn'] as string, new RegExp(`^arn:aws:iam::${m[1]}:role/[\\w+=,.@-]+$`));
    });

    it('Pod Identity: trusts pods.eks.amazonaws.com with AssumeRole and TagSession, scoped to the ServiceAccount by session tags', async () => {
      const s = (await iam('pod-identity-trust-policy.json')).Statement[0] as Obj;
      assert.deepEqual(s.Principal, { Service: 'pods.eks.amazonaws.com' });
      assert.deepEqual([...asList(s.Action)].sort(), ['sts:AssumeRole', 'sts:TagSession']);
      const sa = serviceAccount();
      assert.equal(s.Condition.StringEquals['aws:RequestTag/kubernetes-namespace'], sa.metadata.namespace);
      assert.equal(s.Condition.StringEquals['aws:RequestTag/kubernetes-service-account'], sa.metadata.name);
      const doc = await readFile(join(EXAMPLES, 'iam', 'pod-identity.md'), 'utf8');
      assert.match(doc, new RegExp(`aws eks create-pod-identity-association --cluster-name \\S+ \\\\\\n\\s+--namespace ${sa.metadata.namespace} --service-account ${sa.metadata.name}`));
    });

    it('IAM accepts the roles and the permissions policy (moto\'s IAM: grammar, condition operators)', async () => {
      // moto checks a permissions policy's grammar as IAM does (MalformedPolicyDocument); it does not
      // evaluate trust policies, which the structural tests above pin down instead.
      const moto = await startMoto();
      try {
        const call = async (params: Record<string, string>) => {
          const res = await fetch(moto.url, {
            method: 'POST',
            headers: {
              'content-type': 'application/x-www-form-urlencoded',
              // moto routes by the credential scope and checks no signature.
              authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
            },
            body: new URLSearchParams({ Version: '2010-05-08', ...params }),
          });
          return { status: res.status, body: await res.text() };
        };
        const text = (n: string) => readFile(join(EXAMPLES, 'iam', n), 'utf8');
        for (const [role, trust] of [['irsa', 'irsa-trust-policy.json'], ['pod-identity', 'pod-identity-trust-policy.json']]) {
          const created = await call({ Action: 'CreateRole', RoleName: role!, AssumeRolePolicyDocument: await text(trust!) });
          assert.equal(created.status, 200, created.body);
          const put = await call({ Action: 'PutRolePolicy', RoleName: role!, PolicyName: 'secrets-agent', PolicyDocument: await text('iam-policy.json') });
          assert.equal(put.status, 200, put.body);
          const batch = await call({ Action: 'PutRolePolicy', RoleName: role!, PolicyName: 'secrets-agent-batch-checks', PolicyDocument: await text('iam-policy-batch-checks.json') });
          assert.equal(batch.status, 200, batch.body);
        }
        // The check itself: a misspelt condition operator is refused.
        const bad = await call({ Action: 'PutRolePolicy', RoleName: 'irsa', PolicyName: 'bad', PolicyDocument: (await text('iam-policy.json')).replace('"StringEquals"', '"StringEqual"') });
        assert.equal(bad.status, 400);
        assert.match(bad.body, /MalformedPolicyDocument/);
      } finally {
        await moto.stop();
      }
    });

    it('the optional refresh.batchChecks policy grants ListSecrets alone (it cannot be scoped to resources), and the README says what it exposes', async () => {
      const policy = await iam('iam-policy-batch-checks.json');
      assert.deepEqual(
        (policy.Statement as Obj[]).map((s) => [s.Effect, s.Action, s.Resource]),
        [['Allow', 'secretsmanager:ListSecrets', '*']],
      );
      const readme = await readFile(join(EXAMPLES, '..', 'README.md'), 'utf8');
      assert.match(readme, /iam-policy-batch-checks\.json/);
      assert.match(readme, /every secret's name and metadata/);
    });

    it('least privilege: no wildcard actions, Resource "*" only for BatchGetSecretValue, KMS only via Secrets Manager or Parameter Store, and every secret the configs read is allowed', async () => {
      const policy = await iam('iam-policy.json');
      const grants: Array<{ action: string; resources: string[]; condition?: Obj }> = [];
      for (const s of policy.Statement as Obj[]) {
        assert.equal(s.Effect, 'Allow');
        assert.equal(s.NotAction, undefined);
        assert.equal(s.NotResource, undefined);
        for (const action of asList(s.Action) as string[]) {
          assert.doesNotMatch(action, /\*/, `wildcard action ${action}`);
          grants.push({ action, resources: asList(s.Resource) as string[], condition: s.Condition as Obj | undefined });
        }
      }
      for (const g of grants) {
        if (g.resources.includes('*')) assert.equal(g.action, 'secretsmanager:BatchGetSecretValue', `Resource "*" for ${g.action}`);
      }
      const actions = grants.map((g) => g.action).sort();
      assert.deepEqual(actions, [
        'kms:Decrypt',
        'kms:Decrypt',
        'secretsmanager:BatchGetSecretValue',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'ssm:GetParameters',
        'ssm:GetParametersByPath',
      ]);
      const via = grants.filter((g) => g.action === 'kms:Decrypt').map((kms) => {
        assert.match(kms.resources[0]!, /^arn:aws:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-f-]{36}$/);
        return kms.condition?.StringEquals?.['kms:ViaService'] as string;
      });
      assert.equal(via.length, 2);
      assert.match(via[0]!, /^secretsmanager\.[a-z0-9-]+\.amazonaws\.com$/);
      assert.match(via[1]!, /^ssm\.[a-z0-9-]+\.amazonaws\.com$/);
      // Parameters: named ARNs only (a path's own ARN for GetParametersByPath, its children for GetParameters).
      for (const g of grants.filter((x) => x.action.startsWith('ssm:'))) {
        for (const r of g.resources) assert.match(r, /^arn:aws:ssm:[a-z0-9-]+:\d{12}:parameter\/[A-Za-z0-9_./-]+(?:\/\*)?$/);
      }
      // Each secret a config of ours reads matches a resource of both GetSecretValue and DescribeSecret.
      const glob = (pattern: string) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\?/g, '.').replace(/\*/g, '.*')}$`);
      const account = /::(\d{12}):/.exec(serviceAccount().metadata.annotations['eks.amazonaws.com/role-arn'] as string)![1]!;
      let checked = 0;
      for (const a of agents.filter((x) => mine(x.source) || x.source.startsWith('kubectl'))) {
        const cm = a.configMaps.find((c) => c.metadata?.name === volumeAt(a, posix.dirname(a.configPath))?.configMap?.name)!;
        const config = parse(cm.data[posix.basename(a.configPath)] as string) as Obj;
        for (const [name, spec] of Object.entries(config.secrets as Record<string, Obj>)) {
          const id = spec.id as string;
          // A name resolves to its ARN, which ends in "-" and 6 random characters.
          const arn = id.startsWith('arn:') ? id : `arn:aws:secretsmanager:${config.source.region}:${account}:secret:${id}-AbC123`;
          for (const action of ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret']) {
            const ok = grants.some((g) => g.action === action && g.resources.some((r) => glob(r).test(arn)));
            assert.ok(ok, `${a.source}: secret ${name} (${id}) is not allowed ${action}`);
          }
          // ...and a different secret with the same prefix is not.
          assert.ok(!grants.some((g) => g.action === 'secretsmanager:GetSecretValue' && g.resources.some((r) => glob(r).test(arn.replace(/-AbC123$/, '-extra-AbC123')))));
          checked++;
        }
      }
      assert.ok(checked >= 3);
    });
  });
});

// ---------------------------------------------------------------------------
// The README's "Install on EKS" section. Its ```sh install blocks are run here
// exactly as written; ```sh cluster and ```sh docker blocks need an AWS account
// and cluster or a container engine, so they are checked, not run.

interface CodeBlock {
  info: string;
  body: string;
  line: number;
}

function codeBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    assert.ok(i < lines.length, `README.md (Install on EKS):${start + 1}: unclosed code block`);
    blocks.push({ info: open[1]!.trim(), body: body.join('\n'), line: start + 1 });
  }
  return blocks;
}

/** Commands of a shell block: continuation lines joined, comments and blank lines dropped. */
const commands = (body: string): string[] =>
  body
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

/** Commands the docs give that other parts of CI run exactly as written (checked below). */
const RUN_ELSEWHERE = new Map([
  ['npm ci --no-audit --no-fund', '.ci/run'],
]);

describe('README: Install on EKS', () => {
  let blocks: CodeBlock[];
  let sandbox: string;
  let bin: string | undefined;
  // Values for the variables the ```sh cluster blocks set from the user's account.
  const vars: Record<string, string> = {
    CLUSTER: 'staging',
    REGION: 'eu-west-1',
    NAMESPACE: 'payments',
    SERVICE_ACCOUNT: 'api',
    ACCOUNT_ID: '444455556666',
    OIDC_ISSUER: 'https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF',
    OIDC_PROVIDER: 'oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF',
  };

  before(async () => {
    const readme = await readFile(join(REPO, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Install on EKS');
    const end = readme.indexOf('\n## ', start + 1);
    assert.ok(start > 0 && end > start, 'README.md has an "Install on EKS" section');
    blocks = codeBlocks(readme.slice(start, end));
    // A fresh checkout: the files the commands use, and node_modules (what `npm ci` leaves) linked in.
    sandbox = await mkdtemp(join(tmpdir(), 'sa-install-doc-'));
    for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'agent', 'scripts', 'templates', 'k8s-examples']) {
      await cp(join(REPO, entry), join(sandbox, entry), { recursive: true });
    }
    await symlink(join(REPO, 'node_modules'), join(sandbox, 'node_modules'), 'dir');
    bin = await installedNameDir();
  });

  after(async () => {
    if (sandbox) await rm(sandbox, { recursive: true, force: true });
    if (bin) await rm(bin, { recursive: true, force: true });
  });

  it('marks every shell block as runnable here (sh install), against a cluster (sh cluster) or needing a container engine (sh docker)', () => {
    const shells = blocks.filter((b) => /^(sh|bash|shell|console)\b/.test(b.info));
    assert.ok(shells.length >= 8);
    for (const b of shells) assert.ok(['sh install', 'sh cluster', 'sh docker'].includes(b.info), `README.md (Install on EKS):${b.line}: info string "${b.info}"`);
  });

  it('uses only aws and kubectl in cluster blocks, and only files that exist or that a runnable block makes', () => {
    const made = new Set<string>();
    for (const b of blocks.filter((x) => x.info === 'sh install')) for (const m of b.body.matchAll(/> (\.tmp\/[\w./-]+)/g)) made.add(m[1]!);
    for (const b of blocks.filter((x) => x.info === 'sh cluster')) {
      for (const c of commands(b.body)) {
        const assignment = /^[A-Z_]+=(.*)$/.exec(c);
        if (assignment) {
          for (const sub of assignment[1]!.matchAll(/\$\(([^)]*)\)/g)) assert.match(sub[1]!, /^(aws|kubectl) /, `README.md (Install on EKS):${b.line}: ${c}`);
          continue;
        }
        assert.match(c, /^(aws|kubectl) /, `README.md (Install on EKS):${b.line}: not an aws or kubectl command: ${c}`);
        for (const f of c.matchAll(/(?:file:\/\/|-[fk] )(\S+)/g)) {
          const path = f[1]!;
          assert.ok(made.has(path) || path.startsWith('k8s-examples/'), `README.md (Install on EKS):${b.line}: ${path}`);
          if (path.startsWith('k8s-examples/')) assert.ok(docsExist(path), `README.md (Install on EKS):${b.line}: ${path} does not exist`);
        }
      }
    }
    for (const b of blocks.filter((x) => x.info === 'sh docker')) for (const c of commands(b.body)) assert.match(c, /^docker /);
  });

  it('runs every runnable block exactly as written, in order, and gets the documented results', async () => {
    const assigned = new Set(blocks.filter((b) => b.info === 'sh cluster').flatMap((b) => commands(b.body).map((c) => /^([A-Z_]+)=/.exec(c)?.[1]).filter((n): n is string => !!n)));
    // The blocks use the installed CLI, `secrets-agent …` (its stand-in: installedNameDir).
    const env: NodeJS.ProcessEnv = { ...process.env, ...vars, PATH: `${bin}:${process.env.PATH}` };
    delete env.NODE_OPTIONS;
    delete env.NODE_TEST_CONTEXT;
    const outputs: string[] = [];
    for (const b of blocks.filter((x) => x.info === 'sh install')) {
      for (const v of b.body.matchAll(/\$\{?([A-Z_]+)/g)) {
        assert.ok(assigned.has(v[1]!), `README.md (Install on EKS):${b.line}: $${v[1]} is set by no earlier step`);
        assert.ok(v[1]! in vars, `test: give $${v[1]} a value`);
      }
      const lines = b.body.split('\n').map((l) => (RUN_ELSEWHERE.has(l.trim()) ? `: ${l.trim()}  # run by ${RUN_ELSEWHERE.get(l.trim())}` : l));
      const r = spawnSync('bash', ['-euo', 'pipefail', '-c', lines.join('\n')], { cwd: sandbox, env, encoding: 'utf8', timeout: 180_000 });
      assert.equal(r.status, 0, `README.md (Install on EKS):${b.line}:\n${r.stdout}\n${r.stderr}`);
      outputs.push(r.stdout);
    }
    for (const [cmd, where] of RUN_ELSEWHERE) assert.match(await readFile(join(REPO, where), 'utf8'), new RegExp(`^${cmd}$`, 'm'));
    // validate said ok; kustomize printed the patched Deployment.
    assert.match(outputs.join('\n'), /config\.yaml: ok \(1 secret\(s\), 1 file\(s\)/);
    assert.match(outputs.join('\n'), /name: secrets-agent-config-[a-z0-9]{10}/);
    // The trust policies and the permissions policy now name the user's account, cluster and ServiceAccount.
    const json = async (f: string) => JSON.parse(await readFile(join(sandbox, '.tmp', f), 'utf8')) as Obj;
    const irsa = (await json('irsa-trust-policy.json')).Statement[0] as Obj;
    assert.equal(irsa.Principal.Federated, `arn:aws:iam::${vars.ACCOUNT_ID}:oidc-provider/${vars.OIDC_PROVIDER}`);
    assert.deepEqual(irsa.Condition.StringEquals, {
      [`${vars.OIDC_PROVIDER}:sub`]: `system:serviceaccount:${vars.NAMESPACE}:${vars.SERVICE_ACCOUNT}`,
      [`${vars.OIDC_PROVIDER}:aud`]: 'sts.amazonaws.com',
    });
    const podId = (await json('pod-identity-trust-policy.json')).Statement[0] as Obj;
    assert.deepEqual(podId.Condition.StringEquals, {
      'aws:RequestTag/eks-cluster-name': vars.CLUSTER,
      'aws:RequestTag/kubernetes-namespace': vars.NAMESPACE,
      'aws:RequestTag/kubernetes-service-account': vars.SERVICE_ACCOUNT,
    });
    const policy = JSON.stringify(await json('iam-policy.json'));
    assert.doesNotMatch(policy, /111122223333|us-east-1/);
    assert.match(policy, new RegExp(`arn:aws:secretsmanager:${vars.REGION}:${vars.ACCOUNT_ID}:secret:`));
  });
});

function docsExist(path: string): boolean {
  return spawnSync('test', ['-e', join(REPO, path)]).status === 0;
}
