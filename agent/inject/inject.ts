// `inject`: Kubernetes workload manifests (Deployment, StatefulSet, DaemonSet,
// ReplicaSet, Job, CronJob, Pod; multi-document YAML) -> the same manifests
// with the agent added, offline (as `istioctl kube-inject` / `linkerd inject`).
// Pure: text in, text and diagnostics out; the CLI (cli/inject.ts) reads the
// files, builds the agent config (a file, or `convert eso`) and prints.
//
// What each pod spec gets (docs/inject.md):
// - the volume `secrets-agent-files` (emptyDir, medium Memory, sizeLimit);
// - the agent as the first init container: a native sidecar (`run`,
//   restartPolicy: Always, startupProbe on /readyz) or, for Jobs and CronJobs,
//   a plain init container (`init`), in the shape of k8s-examples/, with a
//   securityContext that passes Pod Security "restricted" by itself, running
//   as the app's user when the pod spec states it (appIdentity), else 65532;
//   a note names each file the app's user could not read, and what to set;
// - the config as a ConfigMap named by its content hash, mounted into the agent;
// - the volume mounted read-only in every app container (at outputDir, unless
//   the container already mounts it);
// - with ESO targets: a `secret` volume of a target becomes the agent's volume
//   at the same mountPath (targetMount() says with which subPath); env from a
//   target's Secret becomes env[].valueFrom.fileKeyRef on the target's env file
//   (envFilePath(); secretKeyRef -> fileKeyRef, envFrom -> one env entry per
//   key, Kubernetes' precedence kept; docs/env-files.md), with no mount and no
//   command change; envFrom of a Secret whose keys are not known offline
//   (EsoTarget.keys) is listed (`unconverted`). All of it in mutatePodSpec(),
//   from the pod spec and the options alone (the webhook calls it too);
// - with a restart notify in the config: `shareProcessNamespace: true`, and the
//   agent runs as the app containers' runAsUser (a note when there is no one
//   such UID); Jobs and CronJobs are refused (the kubelet would not start the
//   app again).
// Idempotent: the agent's container, volumes and ConfigMap are replaced by fresh
// ones, so injecting an injected manifest prints it unchanged. Everything else
// is kept as it was, key order included (the yaml Document API; comments may go).
import { createHash } from 'node:crypto';
import { Document, isMap, isSeq, LineCounter, parseAllDocuments, YAMLMap, YAMLSeq, type Node } from 'yaml';
import { AGENT_RESOURCES } from '../deploy.ts';
import type { Diagnostic } from '../eso/convert.ts';
import { restartRefusal } from '../notify/restart.ts';

export type { Diagnostic } from '../eso/convert.ts';

export interface ManifestInput {
  /** As the user named it ("-" for stdin). */
  readonly file: string;
  readonly text: string;
}

/** One Secret that ESO wrote (an ExternalSecret's target). */
export interface EsoTarget {
  readonly name: string;
  /** The ExternalSecret's namespace; undefined matches any. */
  readonly namespace?: string;
  /**
   * The Secret's keys, when they are known offline (data, template keys);
   * undefined when they come from the secret's JSON at run time
   * (dataFrom.extract) and were not given (`inject --keys`).
   */
  readonly keys?: readonly string[];
}

export interface InjectOptions {
  readonly image: string;
  /** The ConfigMap's data: `config.yaml` and the templates it names. */
  readonly configData: Readonly<Record<string, string>>;
  /** The config's outputDir: where the agent mounts its volume. */
  readonly outputDir: string;
  /** The config's server.listen port ("" or undefined: no server). */
  readonly port?: number;
  /** The ESO targets whose references are rewritten (with --from-eso). */
  readonly targets?: readonly EsoTarget[];
  /**
   * How env from a target reaches the app: `fileKeyRef` (default; Kubernetes
   * EnvFiles, 1.34+) or `entrypoint` (clusters without it: the container's
   * command becomes a POSIX shell that exports each variable from the target's
   * key file, byte for byte, then execs the app's command).
   */
  readonly envMode?: 'fileKeyRef' | 'entrypoint';
  /** The config's files (path, or dir for eachKey; mode as configured, default "0400"): checked for the app's read access. */
  readonly files?: readonly { readonly path: string; readonly mode: string }[];
  /** The config has a restart notify: pods share one process namespace; Jobs and CronJobs are refused. */
  readonly restart?: boolean;
  /**
   * Mount this existing ConfigMap (its `config.yaml`) instead of the one made
   * from configData (the webhook: the pod's secrets-agent.io/config names it).
   */
  readonly configMap?: string;
  /** The agent container's resources; default AGENT_RESOURCES (deploy.ts). */
  readonly resources?: { readonly requests: Readonly<Record<string, string>>; readonly limits: Readonly<Record<string, string>> };
}

export interface Injection {
  /** The manifests (undefined when a fatal diagnostic was found). */
  readonly output?: string;
  readonly diagnostics: readonly Diagnostic[];
}

export const AGENT_CONTAINER = 'secrets-agent';
export const FILES_VOLUME = 'secrets-agent-files';
export const CONFIG_VOLUME = 'secrets-agent-config';
export const CONFIG_MOUNT = '/etc/secrets-agent/config';
export const CONFIG_KEY = 'config.yaml';
/** With envMode entrypoint: where the app's container mounts the agent's volume to read the keys. */
export const ENV_MOUNT = '/run/secrets-agent';
/** Marks the ConfigMaps inject makes: they are regenerated, never kept. */
const MANAGED_BY = 'secrets-agent-inject';

/** Where each kind keeps its pod spec, and whether it runs to completion. */
const WORKLOADS: Record<string, { path: readonly string[]; batch: boolean }> = {
  Pod: { path: ['spec'], batch: false },
  Deployment: { path: ['spec', 'template', 'spec'], batch: false },
  StatefulSet: { path: ['spec', 'template', 'spec'], batch: false },
  DaemonSet: { path: ['spec', 'template', 'spec'], batch: false },
  ReplicaSet: { path: ['spec', 'template', 'spec'], batch: false },
  Job: { path: ['spec', 'template', 'spec'], batch: true },
  CronJob: { path: ['spec', 'jobTemplate', 'spec', 'template', 'spec'], batch: true },
};

/**
 * How an app container mounts the agent's volume in place of the Secret of an
 * ESO target: one target is the whole volume (its keys are the files of
 * outputDir); with several, each target is a subdirectory of outputDir,
 * mounted with `subPath: <target>` at the path the app used.
 */
export function targetMount(target: string, targets: readonly EsoTarget[]): { subPath?: string } {
  return new Set(targets.map((t) => t.name)).size > 1 ? { subPath: target } : {};
}

/** What mutatePodSpec needs besides the pod spec and the options. */
export interface PodContext {
  /** The document that holds the spec (its nodes are made with doc.createNode). */
  readonly doc: Document;
  /** The workload's kind (Deployment, Job, Pod, ...). */
  readonly kind: string;
  /** Runs to completion (Job, CronJob): the agent is a plain init container (`init`), not a sidecar. */
  readonly batch: boolean;
  /** The workload's namespace (matches the targets' namespaces). */
  readonly namespace?: string;
  /** Reports a diagnostic at a path relative to the pod spec. */
  readonly say: (severity: Diagnostic['severity'], path: readonly (string | number)[], message: string) => void;
}

/**
 * Where the env file of an ESO target lies in the agent's volume (the path of
 * env[].valueFrom.fileKeyRef): `<target>/<target>.env`, inside the target's
 * directory when there are several targets (the file is then part of that
 * target's generation), beside its keys otherwise. A function of the name
 * alone, so the webhook computes it from the Secret names it is given.
 */
export function envFilePath(target: string): string {
  return `${target}/${target}.env`;
}

/** `secrets-agent-config-` + 10 characters of the data's hash (as kustomize's generators name them). */
export function configMapName(data: Readonly<Record<string, string>>): string {
  const canonical = JSON.stringify(Object.keys(data).sort().map((k) => [k, data[k]]));
  return `secrets-agent-config-${createHash('sha256').update(canonical).digest('hex').slice(0, 10)}`;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The image's user (distroless "nonroot"): the agent's UID unless it runs as the app's. */
export const AGENT_UID = 65532;

/**
 * The agent container's securityContext: everything Pod Security "restricted"
 * asks of a container, set on the container itself so the pod passes whatever
 * its pod-level securityContext says (docs/inject.md, Pod Security), running as
 * `uid` (the app's, when known; else AGENT_UID).
 */
export function agentSecurityContext(uid: number): Obj {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/**
 * The app's identity as the pod spec states it: the UID every app container
 * runs as (its runAsUser, else the pod's; undefined when they differ, when one
 * is left to the image's USER, or when it is root), and the pod's fsGroup.
 */
export function appIdentity(spec: Obj): { uid?: number; fsGroup?: number } {
  const pod = isObj(spec['securityContext']) ? spec['securityContext'] : {};
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined);
  const containers = Array.isArray(spec['containers']) ? spec['containers'].filter(isObj) : [];
  const uids = new Set(containers.map((c) => num(isObj(c['securityContext']) ? c['securityContext']['runAsUser'] : undefined) ?? num(pod['runAsUser'])));
  const [uid] = uids;
  const fsGroup = num(pod['fsGroup']);
  return { ...(uids.size === 1 && uid !== undefined && uid > 0 ? { uid } : {}), ...(fsGroup !== undefined && fsGroup > 0 ? { fsGroup } : {}) };
}

/** The agent's container, in the shape of k8s-examples/native-sidecar.yaml (run) or job.yaml (init). */
function agentContainer(opts: InjectOptions, batch: boolean, uid: number): Obj {
  const mounts = [
    { name: FILES_VOLUME, mountPath: opts.outputDir },
    { name: CONFIG_VOLUME, mountPath: CONFIG_MOUNT, readOnly: true },
  ];
  const resources = structuredClone(opts.resources ?? AGENT_RESOURCES) as unknown as Obj;
  const securityContext = agentSecurityContext(uid);
  const config = `${CONFIG_MOUNT}/${CONFIG_KEY}`;
  if (batch) {
    return {
      name: AGENT_CONTAINER,
      image: opts.image,
      // The ENTRYPOINT without --lite-mode: starts faster (Dockerfile).
      command: ['/nodejs/bin/node', '--disable-sigusr1', '--max-semi-space-size=1', '/app/secrets-agent.mjs'],
      args: ['init', '--config', config, '--timeout', '1m'],
      resources,
      securityContext,
      volumeMounts: mounts,
    };
  }
  const probe = (path: string, more: Obj): Obj => ({ httpGet: { path, port: 'metrics' }, ...more });
  return {
    name: AGENT_CONTAINER,
    image: opts.image,
    // The image's ENTRYPOINT (Dockerfile), so the container runs the same with any image tag.
    command: ['/nodejs/bin/node', '--disable-sigusr1', '--lite-mode', '--max-semi-space-size=1', '/app/secrets-agent.mjs'],
    args: ['run', '--config', config],
    restartPolicy: 'Always',
    ports: [{ name: 'metrics', containerPort: opts.port ?? 9102, protocol: 'TCP' }],
    startupProbe: probe('/readyz', { periodSeconds: 1, failureThreshold: 120 }),
    readinessProbe: probe('/readyz', { periodSeconds: 10 }),
    livenessProbe: probe('/healthz', { periodSeconds: 10, failureThreshold: 3 }),
    resources,
    securityContext,
    volumeMounts: mounts,
  };
}

export function inject(inputs: readonly ManifestInput[], opts: InjectOptions): Injection {
  const diagnostics: Diagnostic[] = [];
  const cmName = configMapName(opts.configData);

  interface Parsed { file: string; doc: Document; lines: LineCounter }
  const docs: Parsed[] = [];
  const lineAt = (p: Parsed, path: readonly (string | number)[]): number | undefined => {
    for (let at = path; ; at = at.slice(0, -1)) {
      const node = p.doc.getIn(at, true) as Node | undefined;
      if (node?.range) return p.lines.linePos(node.range[0]).line;
      if (at.length === 0) return undefined;
    }
  };
  const say = (severity: Diagnostic['severity'], p: Parsed | { file: string }, path: readonly (string | number)[] | number | undefined, message: string): void => {
    const line = typeof path === 'number' ? path : path === undefined || !('doc' in p) ? undefined : lineAt(p, path);
    diagnostics.push({ severity, file: p.file, ...(line === undefined ? {} : { line }), message });
  };

  for (const input of inputs) {
    const lines = new LineCounter();
    for (const doc of parseAllDocuments(input.text, { lineCounter: lines, prettyErrors: false }) as Document.Parsed[]) {
      const err = doc.errors[0];
      if (err) {
        say('fatal', { file: input.file }, lines.linePos(err.pos[0]).line, `YAML syntax error: ${err.message.split('\n')[0]}; fix the manifest`);
        continue;
      }
      if (doc.contents === null) continue;
      docs.push({ file: input.file, doc, lines });
    }
  }
  if (diagnostics.some((d) => d.severity === 'fatal')) return { diagnostics };

  const kindOf = (p: Parsed): string | undefined => str(p.doc.get('kind'));
  const ours = (p: Parsed): boolean => kindOf(p) === 'ConfigMap' && p.doc.getIn(['metadata', 'labels', 'app.kubernetes.io/managed-by']) === MANAGED_BY;
  const workloads = docs.filter((p) => WORKLOADS[kindOf(p) ?? ''] !== undefined);
  if (workloads.length === 0) {
    const first = docs.find((p) => !ours(p)) ?? docs[0];
    const kind = first ? (kindOf(first) ?? 'a document without kind') : undefined;
    say('fatal', first ?? { file: inputs[0]?.file ?? '-' }, first ? ['kind'] : undefined, `${kind ? `${kind} is not a workload, and there is no workload in the input` : 'the input is empty'}: nothing to inject into; give the Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod manifests`);
    return { diagnostics };
  }

  const namespaces = new Set<string | undefined>();
  for (const p of workloads) {
    const { path, batch } = WORKLOADS[kindOf(p)!]!;
    const spec = p.doc.getIn(path, true);
    if (!isMap(spec)) {
      say('fatal', p, path.slice(0, -1), `${kindOf(p)} has no pod spec at ${path.join('.')}; fix the manifest`);
      continue;
    }
    if (!batch && opts.port === undefined) {
      say('fatal', p, ['kind'], `the agent runs as a native sidecar in a ${kindOf(p)}, and its startupProbe needs /readyz, but the config's server.listen is ""; set server.listen (e.g. "0.0.0.0:9102")`);
      continue;
    }
    const namespace = str(p.doc.getIn(['metadata', 'namespace']));
    namespaces.add(namespace);
    mutatePodSpec(spec, opts, {
      doc: p.doc,
      kind: kindOf(p)!,
      batch,
      ...(namespace === undefined ? {} : { namespace }),
      say: (severity, at, message) => say(severity, p, [...path, ...at], message),
    });
  }
  if (diagnostics.some((d) => d.severity === 'fatal')) return { diagnostics };

  // The ConfigMaps first (one per namespace of the workloads), then every input document but our old ConfigMaps.
  const out: string[] = [];
  for (const namespace of namespaces) {
    const cm = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: cmName,
        ...(namespace === undefined ? {} : { namespace }),
        labels: { 'app.kubernetes.io/name': 'secrets-agent', 'app.kubernetes.io/managed-by': MANAGED_BY },
      },
      data: opts.configData,
    };
    out.push(new Document(cm).toString({ lineWidth: 0 }));
  }
  for (const p of docs) if (!ours(p)) out.push(p.doc.toString({ lineWidth: 0 }).replace(/^---\n/, ''));
  return { output: out.join('---\n'), diagnostics };
}

/**
 * Whether the app can read every file: the agent writes them as its own UID
 * with the configured mode, into an emptyDir that is setgid to the pod's
 * fsGroup when there is one (so the files get that group). Running as the
 * app's UID: the owner's bits (every mode has them). Else, with an fsGroup:
 * the group's. Else the app's user is the image's USER, which a manifest
 * does not show: only the others' bits are sure. A note says what to set.
 */
function readable(opts: InjectOptions, say: PodContext['say'], app: { uid?: number; fsGroup?: number }): void {
  if (app.uid !== undefined) {
    say('note', ['securityContext'], `the app runs as user ${app.uid} (runAsUser), so the agent runs as that user too: its files are the app's own, whatever their mode`);
    return;
  }
  const bit = app.fsGroup !== undefined ? 0o040 : 0o004;
  const closed = (opts.files ?? []).filter((f) => (parseInt(f.mode, 8) & bit) === 0);
  if (closed.length === 0) return;
  const list = closed.map((f) => `${f.path} (${f.mode})`).join(', ');
  say(
    'note',
    ['securityContext'],
    app.fsGroup !== undefined
      ? `the files are group ${app.fsGroup} (the pod's fsGroup), but ${list} ${closed.length > 1 ? 'are' : 'is'} not group-readable, so the app cannot read ${closed.length > 1 ? 'them' : 'it'} unless it runs as user ${AGENT_UID}; set mode: "0440" on ${closed.length > 1 ? 'them' : 'it'} in the agent config`
      : `the manifest does not say which user the app runs as (the image's USER), and the agent writes its files as user ${AGENT_UID}: ${list} ${closed.length > 1 ? 'are' : 'is'} readable only by that user and its group; set the pod's securityContext.runAsUser to the app's UID (the agent then runs as it), or fsGroup (any group but 0) with mode: "0440" on the files`,
  );
}

/** The sequence at `key` of `map`, made (empty) when missing. */
function seqIn(map: YAMLMap, key: string): YAMLSeq {
  const node: unknown = map.get(key, true);
  if (isSeq(node)) return node;
  const seq = new YAMLSeq();
  map.set(key, seq);
  return seq;
}

/**
 * The keys of the Secret ESO makes for this ExternalSecret spec, when they are
 * known offline: data[].secretKey, and the keys of target.template.data (only
 * those with mergePolicy Replace, the default; with Merge, both). Undefined when
 * a key comes from the secret's value at run time (dataFrom) or from
 * templateFrom.
 */
function secretKeys(spec: Obj): string[] | undefined {
  const data = Array.isArray(spec['data']) ? spec['data'] : [];
  const dataKeys = data.map((d) => (isObj(d) ? str(d['secretKey']) : undefined)).filter((k): k is string => k !== undefined);
  const fromValue = Array.isArray(spec['dataFrom']) && spec['dataFrom'].length > 0;
  const template = isObj(spec['target']) && isObj(spec['target']['template']) ? spec['target']['template'] : undefined;
  if (template?.['templateFrom'] !== undefined) return undefined;
  const tplKeys = template && isObj(template['data']) ? Object.keys(template['data']) : undefined;
  if (tplKeys === undefined) return fromValue ? undefined : dataKeys;
  if (template!['mergePolicy'] !== 'Merge') return tplKeys;
  return fromValue ? undefined : [...new Set([...dataKeys, ...tplKeys])];
}

/** The Secrets ESO writes for these ExternalSecrets (spec.target.name, else metadata.name). */
export function esoTargets(texts: readonly string[]): EsoTarget[] {
  const found: EsoTarget[] = [];
  for (const text of texts) {
    for (const doc of parseAllDocuments(text) as Document.Parsed[]) {
      if (doc.errors.length > 0) continue;
      const v: unknown = doc.toJS();
      if (!isObj(v) || v['kind'] !== 'ExternalSecret') continue;
      const meta = isObj(v['metadata']) ? v['metadata'] : {};
      const spec = isObj(v['spec']) ? v['spec'] : {};
      const name = str(isObj(spec['target']) ? spec['target']['name'] : undefined) ?? str(meta['name']);
      const namespace = str(meta['namespace']);
      const keys = secretKeys(spec);
      if (name) found.push({ name, ...(namespace === undefined ? {} : { namespace }), ...(keys === undefined ? {} : { keys }) });
    }
  }
  return found;
}

/**
 * Adds the agent to one pod spec and rewrites what referenced the replaced
 * Secrets (opts.targets), in place: the whole per-pod mutation, computed from
 * the pod spec and the options alone (inject's document loop and the admission
 * webhook both call it). Diagnostics go to ctx.say, at paths relative to the spec.
 */
export function mutatePodSpec(spec: YAMLMap, opts: InjectOptions, ctx: PodContext): void {
  const { doc, batch, namespace, say } = ctx;
  const refusal = opts.restart ? restartRefusal(ctx.kind) : undefined;
  if (refusal !== undefined) {
    say('fatal', [], refusal);
    return;
  }
  const targets = opts.targets ?? [];
  const cmName = opts.configMap ?? configMapName(opts.configData);
  const seqAt = (key: string): YAMLSeq => seqIn(spec, key);
  const targetOf = (secretName: string | undefined): string | undefined =>
    secretName === undefined ? undefined : targets.find((t) => t.name === secretName && (t.namespace === undefined || namespace === undefined || t.namespace === namespace))?.name;

  // Volumes: the ESO targets' secret volumes go; the agent's two are (re)made.
  const volumes = seqAt('volumes');
  const replaced = new Map<string, string>(); // volume name -> target
  const kept: unknown[] = [];
  volumes.items.forEach((item, i) => {
    const v = isMap(item) ? (item.toJSON() as Obj) : {};
    const name = str(v['name']);
    if (name === FILES_VOLUME || name === CONFIG_VOLUME) return;
    const secret = isObj(v['secret']) ? v['secret'] : undefined;
    const target = targetOf(str(secret?.['secretName']));
    if (name && target) {
      replaced.set(name, target);
      if (secret?.['items'] !== undefined) {
        say('unconverted', ['volumes', i, 'secret', 'items'], `volume "${name}" selects or renames keys of the Secret "${target}" with items: the agent writes every key under its own name, so the app now reads <mountPath>/<key>; rename the files in the agent config (files[].path) or point the app at the keys' names`);
      }
      return;
    }
    const projected = isObj(v['projected']) && Array.isArray(v['projected']['sources']) ? v['projected']['sources'] : [];
    projected.forEach((s, j) => {
      const t = isObj(s) && isObj(s['secret']) ? targetOf(str(s['secret']['name'])) : undefined;
      if (t) say('unconverted', ['volumes', i, 'projected', 'sources', j], `projected volume "${name ?? ''}" takes the Secret "${t}", which ESO wrote and the agent replaces: a projected volume cannot take an emptyDir; mount the agent's volume (${FILES_VOLUME}) at a path of its own instead`);
    });
    kept.push(item);
  });
  volumes.items = kept;
  volumes.items.push(
    doc.createNode({ name: FILES_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }),
    doc.createNode({ name: CONFIG_VOLUME, configMap: { name: cmName } }),
  );

  // Containers: the app's mounts of a replaced volume point at the agent's; env from a target is listed.
  const fixContainer = (c: unknown, where: (string | number)[], app: boolean): void => {
    if (!isMap(c)) return;
    const cname = str(c.get('name')) ?? '';
    const mounts = c.get('volumeMounts', true);
    let mountsAgent = false;
    if (isSeq(mounts)) {
      for (const m of mounts.items) {
        if (!isMap(m)) continue;
        const name = str(m.get('name'));
        const target = name === undefined ? undefined : replaced.get(name);
        if (target !== undefined) {
          m.set('name', FILES_VOLUME);
          m.set('readOnly', true);
          const { subPath } = targetMount(target, targets);
          if (subPath === undefined) m.delete('subPath');
          else m.set('subPath', subPath);
        }
        if (str(m.get('name')) === FILES_VOLUME) mountsAgent = true;
      }
    }
    const taken = isSeq(mounts) ? mounts.items.find((m) => isMap(m) && m.get('mountPath') === opts.outputDir) : undefined;
    if (app && !mountsAgent && taken) {
      say('unconverted', [...where, 'volumeMounts'], `container "${cname}" already mounts the volume "${str((taken as YAMLMap).get('name')) ?? ''}" at ${opts.outputDir}, the config's outputDir, so the agent's volume is not mounted there; remove that mount (or set outputDir to another path)`);
    } else if (app && !mountsAgent && targets.length === 0) {
      // With ESO targets the app reads what it read before: the replaced Secret volumes
      // (remounted above) and env (fileKeyRef, read by the kubelet: no mount needed).
      seqIn(c, 'volumeMounts').items.push(doc.createNode({ name: FILES_VOLUME, mountPath: opts.outputDir, readOnly: true }));
    }
    const rewritten = rewriteEnv(c, where, cname);
    if (rewritten && opts.envMode === 'entrypoint') toEntrypoint(c, where, cname);
    else if (rewritten) {
      say('note', [...where, 'env'], `container "${cname}": env from the replaced Secrets now reads the agent's env file with valueFrom.fileKeyRef, which needs the EnvFiles feature (on by default from Kubernetes 1.35; 1.34 with the gate on and --env-syntax plain); without it, inject again with --env-mode entrypoint (docs/env-files.md#which-mode-applies)`);
    }
  };

  // envMode entrypoint: the fileKeyRef entries just made become exports of a shell that execs the app.
  const toEntrypoint = (c: YAMLMap, where: (string | number)[], cname: string): void => {
    const env = c.get('env', true);
    if (!isSeq(env)) return;
    const ours = env.items.filter((e) => isMap(e) && e.getIn(['valueFrom', 'fileKeyRef', 'volumeName']) === FILES_VOLUME);
    if (ours.length === 0) return;
    const command = c.get('command', true);
    const argv = isSeq(command) ? command.items.map((i) => str(isMap(i) ? undefined : (i as { value?: unknown }).value)) : [];
    if (argv.length === 0 || argv.some((a) => a === undefined)) {
      say('unconverted', [...where, 'env'], `container "${cname}" has no command in the manifest, and --env-mode entrypoint must start the app's command itself: give the image's ENTRYPOINT as command: [...] (docker inspect, Config.Entrypoint), then inject again; its env still reads the agent's env file (fileKeyRef)`);
      return;
    }
    const several = new Set(targets.map((t) => t.name)).size > 1;
    const lines: string[] = [];
    for (const e of ours as YAMLMap[]) {
      const name = str(e.get('name')) ?? '';
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        say('unconverted', [...where, 'env'], `container "${cname}": env ${JSON.stringify(name)} is not a name a POSIX shell can export, so --env-mode entrypoint cannot set it; it still reads the agent's env file (fileKeyRef)`);
        return;
      }
      const path = str(e.getIn(['valueFrom', 'fileKeyRef', 'path'])) ?? '';
      const key = str(e.getIn(['valueFrom', 'fileKeyRef', 'key'])) ?? '';
      const target = path.slice(0, path.indexOf('/'));
      const file = `${ENV_MOUNT}/${several ? `${target}/` : ''}${key}`;
      lines.push(`v ${name} '${file}' ${e.getIn(['valueFrom', 'fileKeyRef', 'optional']) === true ? 1 : 0}`);
    }
    // $(cat f; printf .) then ${x%.}: the file's bytes, trailing newlines included.
    const script = [
      'set -e',
      'v() { if [ ! -e "$2" ]; then [ "$3" = 1 ] && return 0; echo "secrets-agent: $2 is missing" >&2; exit 1; fi; x=$(cat "$2"; printf .); export "$1=${x%.}"; }',
      ...lines,
      'exec "$0" "$@"',
    ].join('\n');
    env.items = env.items.filter((e) => !ours.includes(e));
    if (env.items.length === 0) c.delete('env');
    const args = c.get('args', true);
    const rest = [...argv.slice(1), ...(isSeq(args) ? args.items.map((i) => (i as { value?: unknown }).value) : [])];
    c.set('command', doc.createNode(['/bin/sh', '-c', script, argv[0]]));
    if (rest.length > 0) c.set('args', doc.createNode(rest));
    else c.delete('args');
    const mounts = seqIn(c, 'volumeMounts');
    if (!mounts.items.some((m) => isMap(m) && m.get('mountPath') === ENV_MOUNT)) mounts.items.push(doc.createNode({ name: FILES_VOLUME, mountPath: ENV_MOUNT, readOnly: true }));
    say('note', [...where, 'command'], `container "${cname}": --env-mode entrypoint: its command is now /bin/sh, which exports ${lines.length} variable(s) from the agent's files (mounted at ${ENV_MOUNT}) with ESO's bytes and execs ${JSON.stringify(argv[0])}: the image needs /bin/sh, and $(VAR) references to these variables in command, args or env are no longer expanded by the kubelet`);
  };

  // env and envFrom of a target's Secret -> env[].valueFrom.fileKeyRef on the target's env file
  // (the kubelet reads it at container start: no mount, no command change; docs/env-files.md).
  const fileKeyRef = (target: string, key: string, optional: unknown): Obj => ({
    fileKeyRef: { volumeName: FILES_VOLUME, path: envFilePath(target), key, ...(optional === undefined ? {} : { optional }) },
  });
  /** True when something was rewritten. */
  const rewriteEnv = (c: YAMLMap, where: (string | number)[], cname: string): boolean => {
    let rewritten = false;
    const env = c.get('env', true);
    const explicit = new Set(isSeq(env) ? env.items.map((e) => (isMap(e) ? str(e.get('name')) : undefined)).filter((n): n is string => n !== undefined) : []);
    if (isSeq(env)) {
      for (const e of env.items) {
        const ref = isMap(e) ? e.getIn(['valueFrom', 'secretKeyRef'], true) : undefined;
        if (!isMap(ref)) continue;
        const t = targetOf(str(ref.get('name')));
        const key = str(ref.get('key'));
        if (t === undefined || key === undefined) continue;
        (e as YAMLMap).set('valueFrom', doc.createNode(fileKeyRef(t, key, ref.get('optional'))));
        rewritten = true;
      }
    }
    const envFrom = c.get('envFrom', true);
    if (!isSeq(envFrom)) return rewritten;
    // Kubernetes: a later envFrom wins over an earlier one, env over envFrom (kubelet_pods.go,
    // makeEnvironmentVariables). So the entries made from envFrom go first in env, in envFrom
    // order (a later env entry of the same name wins), and none for a name env sets itself.
    const made = new Map<string, Obj>();
    const keptFrom: unknown[] = [];
    let converted = false;
    envFrom.items.forEach((e, k) => {
      const t = isMap(e) ? targetOf(str(e.getIn(['secretRef', 'name']))) : undefined;
      if (t === undefined) {
        keptFrom.push(e);
        if (converted) {
          say('note', [...where, 'envFrom', k], `container "${cname}": envFrom entry ${k} comes after an envFrom of a Secret the agent replaces, whose keys are now env entries, and env wins over envFrom: for a name both have, the replaced Secret's value is used now (before, this entry's); check that they share no name`);
        }
        return;
      }
      const target = targets.find((x) => x.name === t)!;
      const prefix = str((e as YAMLMap).get('prefix')) ?? '';
      const optional = (e as YAMLMap).getIn(['secretRef', 'optional']);
      if (target.keys === undefined) {
        keptFrom.push(e);
        say('unconverted', [...where, 'envFrom', k, 'secretRef'], `container "${cname}" takes envFrom the Secret "${t}", whose keys come from the secret's JSON at run time (dataFrom.extract): they cannot be known offline, so no env entry is made for them; give them with --keys ${t}=KEY1,KEY2 (the top-level keys of the secret's JSON, e.g. aws secretsmanager get-secret-value --secret-id ID --query SecretString --output text | jq -r 'keys|join(",")' with your own credentials)`);
        return;
      }
      converted = true;
      for (const key of target.keys) {
        made.delete(prefix + key);
        made.set(prefix + key, fileKeyRef(t, key, optional));
      }
    });
    if (!converted) return rewritten;
    const entries = [...made].filter(([name]) => !explicit.has(name)).map(([name, valueFrom]) => doc.createNode({ name, valueFrom }));
    seqIn(c, 'env').items.unshift(...entries);
    if (keptFrom.length === 0) c.delete('envFrom');
    else envFrom.items = keptFrom;
    return true;
  };

  // The IRSA trust policy names the ServiceAccount the pod really runs as (convert eso's note has a placeholder).
  if (targets.length > 0) {
    const sa = str(spec.get('serviceAccountName')) ?? 'default';
    const ns = namespace ?? 'NAMESPACE';
    say('note', spec.has('serviceAccountName') ? ['serviceAccountName'] : [], `this ${ctx.kind} runs as the ServiceAccount "${sa}"${namespace === undefined ? '' : ` of namespace "${ns}"`}: in the role's trust policy, APP_SERVICE_ACCOUNT is "${sa}" (sub "system:serviceaccount:${ns}:${sa}"), and that ServiceAccount carries the annotation eks.amazonaws.com/role-arn`);
  }

  // initContainers: the agent first (it must run before everything that reads its files).
  const inits = seqAt('initContainers');
  inits.items = inits.items.filter((c) => !(isMap(c) && c.get('name') === AGENT_CONTAINER));
  inits.items.forEach((c, i) => fixContainer(c, ['initContainers', i + 1], false));
  const app = appIdentity(spec.toJSON() as Obj);
  // A restart notify ends the app container's main process: the agent must see it (notify/restart.ts),
  // as the app's user (appIdentity; restartUidNote says what to set when the manifest does not tell).
  if (opts.restart) {
    spec.set('shareProcessNamespace', true);
    if (app.uid === undefined) restartUidNote(spec.toJSON() as Obj, say);
  }
  inits.items.unshift(doc.createNode(agentContainer(opts, batch, app.uid ?? AGENT_UID)));
  readable(opts, say, app);
  const containers = spec.get('containers', true);
  if (isSeq(containers)) containers.items.forEach((c, i) => fixContainer(c, ['containers', i], true));
}

/**
 * A restart notify signals the app's main process, which only the app's UID may do (the agent
 * has no capabilities). Called when appIdentity found no one non-root runAsUser for the app
 * containers: a note says what to set.
 */
function restartUidNote(spec: Obj, say: PodContext['say']): void {
  const pod = isObj(spec['securityContext']) ? spec['securityContext'] : {};
  const containers = Array.isArray(spec['containers']) ? spec['containers'].filter(isObj) : [];
  const uids = new Set(containers.map((c) => (isObj(c['securityContext']) ? c['securityContext']['runAsUser'] : undefined) ?? pod['runAsUser']));
  const why =
    uids.size > 1 ? 'the app containers run as different users' : uids.has(0) ? 'the app containers run as root, which the agent never does' : 'the app containers set no securityContext.runAsUser (their image\'s USER applies)';
  say('note', ['containers'], `the restart notify ends the app container's main process, which the agent may do only as the app's user, and ${why}: set the app's securityContext.runAsUser to its (non-root) UID, and the agent runs as it (it is ${AGENT_UID} now)`);
}
