// `webhook`: one AdmissionReview (admission.k8s.io/v1, JSON text) in, the HTTP
// status and body to answer out. The same mutation as `inject`
// (inject.ts's mutatePodSpec), applied to the Pod of the review; the answer is
// the RFC 6902 JSON Patch from the Pod to the mutated Pod (fast-json-patch's
// compare), checked by applying it to the Pod before it is sent. Pure: no
// I/O, no Kubernetes API (the server is server.ts; docs/webhook.md).
//
// Contract:
// - A body that is not JSON, not an object, not apiVersion
//   admission.k8s.io/v1 kind AdmissionReview, or without request.uid: HTTP 400
//   naming what is wrong (there is no uid to answer to), result `invalid`.
// - Otherwise HTTP 200 and an AdmissionReview whose response echoes the uid:
//   - `skipped` (allowed, no patch): not a Pod CREATE; neither the label nor
//     the annotation `secrets-agent.io/inject: "true"` (the annotation, when
//     present, wins: "false" opts a labelled pod out); or the pod already has the agent
//     (a container named secrets-agent: idempotent, a reinvocation changes
//     nothing);
//   - `denied` (allowed: false, status.code 400, a message naming each
//     annotation at fault and the fix, or what the agent cannot serve in the
//     pod): a bad annotation value, no request.object, a diagnostic the
//     mutation reports as fatal or unconverted;
//   - `mutated` (allowed, patchType JSONPatch, patch base64): the agent added.
//     The mutation's notes are the response's warnings.
// - Annotations (prefix secrets-agent.io/, on the pod, i.e. the pod
//   template): inject, config (the ConfigMap with config.yaml, in the pod's
//   namespace: mounted, never read), output-dir and port (the config's outputDir
//   and server.listen port, which the webhook cannot read: defaults
//   /run/secrets/app and 9102, the same as inject's), replaces-secret
//   (ESO targets, as inject --from-eso) and secret-keys (their keys, as
//   inject --keys: what an envFrom of one becomes), env-mode (inject
//   --env-mode), image, cpu-request,
//   memory-request, memory-limit.
// - Jobs' pods (controller ownerReference kind Job: Jobs and CronJobs) get the
//   plain init container, as inject gives Job and CronJob.
// - Logged fields (`log`): uid, namespace, pod name, result, reason: never a
//   field of the pod (an env value may be a secret).
import { isDeepStrictEqual } from 'node:util';
import jsonpatch from 'fast-json-patch';
import { Document, type YAMLMap } from 'yaml';
import { AGENT_PORT, AGENT_RESOURCES, OUTPUT_DIR } from '../deploy.ts';
import { AGENT_CONTAINER, mutatePodSpec, type Diagnostic, type InjectOptions } from '../inject/inject.ts';

export const PREFIX = 'secrets-agent.io/';
export const ANNOTATIONS = {
  inject: `${PREFIX}inject`,
  config: `${PREFIX}config`,
  outputDir: `${PREFIX}output-dir`,
  port: `${PREFIX}port`,
  replacesSecret: `${PREFIX}replaces-secret`,
  secretKeys: `${PREFIX}secret-keys`,
  envMode: `${PREFIX}env-mode`,
  image: `${PREFIX}image`,
  cpuRequest: `${PREFIX}cpu-request`,
  memoryRequest: `${PREFIX}memory-request`,
  memoryLimit: `${PREFIX}memory-limit`,
} as const;

export const REVIEW_RESULTS = ['mutated', 'skipped', 'denied', 'invalid', 'error'] as const;
export type ReviewResultName = (typeof REVIEW_RESULTS)[number];

export interface ReviewOptions {
  /** The agent's image when the pod names none (secrets-agent.io/image). */
  readonly image: string;
}

export interface ReviewOutcome {
  readonly status: number;
  readonly body: string;
  readonly result: ReviewResultName;
  /** What to log (names and codes only). */
  readonly log?: Readonly<Record<string, unknown>>;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** RFC 1123 subdomain (a ConfigMap's or Secret's name), as the API server checks it. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A resource quantity (apimachinery resource.Quantity's grammar). */
const QUANTITY = /^[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$/;

const invalid = (message: string): ReviewOutcome => ({ status: 400, body: `${message}\n`, result: 'invalid', log: { reason: message } });

/** What the annotations ask for: the mutation's options, or every problem found. */
export function fromAnnotations(annotations: Readonly<Record<string, unknown>>, defaults: ReviewOptions): { opts?: InjectOptions; problems: string[] } {
  const problems: string[] = [];
  const get = (key: string): string | undefined => {
    const v = annotations[key];
    // Annotation values are strings (the API server's schema); anything else reads as its JSON.
    return v === undefined ? undefined : typeof v === 'string' ? v : JSON.stringify(v);
  };
  const config = get(ANNOTATIONS.config);
  if (config === undefined || config === '') {
    problems.push(`${ANNOTATIONS.config} is ${config === undefined ? 'missing' : 'empty'}: name the ConfigMap that holds the agent's config.yaml in this namespace (e.g. ${ANNOTATIONS.config}: my-app-secrets-agent)`);
  } else if (config.length > 253 || !DNS_SUBDOMAIN.test(config)) {
    problems.push(`${ANNOTATIONS.config} "${config}" is not a ConfigMap name (lower-case letters, digits, "-" and ".", at most 253); give the ConfigMap's metadata.name`);
  }
  const outputDir = get(ANNOTATIONS.outputDir) ?? OUTPUT_DIR;
  if (!outputDir.startsWith('/') || outputDir.split('/').includes('..') || outputDir.includes(':')) {
    problems.push(`${ANNOTATIONS.outputDir} "${outputDir}" is not an absolute path without ".." or ":"; give the config's outputDir (default ${OUTPUT_DIR})`);
  }
  const portText = get(ANNOTATIONS.port) ?? String(AGENT_PORT);
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    problems.push(`${ANNOTATIONS.port} "${portText}" is not a port (1-65535); give the port of the config's server.listen (default ${AGENT_PORT})`);
  }
  const replaces = get(ANNOTATIONS.replacesSecret);
  const targets = replaces === undefined ? [] : replaces.split(',').map((s) => s.trim());
  const badTargets = targets.filter((t) => t.length > 253 || !DNS_SUBDOMAIN.test(t));
  if (badTargets.length > 0 || (replaces !== undefined && targets.length === 0)) {
    problems.push(`${ANNOTATIONS.replacesSecret} "${replaces ?? ''}" is not a comma-separated list of Secret names${badTargets.length > 0 ? ` (${badTargets.map((t) => `"${t}"`).join(', ')})` : ''}; name the Secrets ESO wrote that the agent replaces (e.g. ${ANNOTATIONS.replacesSecret}: db-creds,api-keys)`);
  }
  // The keys of a replaced Secret (inject --keys; inject knows them from the ExternalSecret, the webhook cannot):
  // what an envFrom of that Secret becomes, one env entry per key.
  const keysText = get(ANNOTATIONS.secretKeys);
  const keys = new Map<string, string[]>();
  for (const part of keysText === undefined ? [] : keysText.split(';').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([^=\s]+)\s*=\s*(.+)$/.exec(part);
    const list = m ? m[2]!.split(',').map((k) => k.trim()) : [];
    if (!m || list.some((k) => k === '' || /[\s=;]/.test(k))) {
      problems.push(`${ANNOTATIONS.secretKeys} part "${part}" is not SECRET=KEY1,KEY2; give each replaced Secret's keys, parts separated by ";" (e.g. ${ANNOTATIONS.secretKeys}: "db-credentials=DB_USER,DB_PASSWORD;api-key=token")`);
    } else if (!targets.includes(m[1]!)) {
      problems.push(`${ANNOTATIONS.secretKeys} names "${m[1]!}", which is not in ${ANNOTATIONS.replacesSecret}; list it there, or remove it here`);
    } else {
      keys.set(m[1]!, list);
    }
  }
  const envMode = get(ANNOTATIONS.envMode);
  if (envMode !== undefined && envMode !== 'fileKeyRef' && envMode !== 'entrypoint') {
    problems.push(`${ANNOTATIONS.envMode} "${envMode}" is not fileKeyRef or entrypoint; fileKeyRef (the default) needs Kubernetes EnvFiles (1.34+), entrypoint exports the variables from a shell (docs/env-files.md)`);
  }
  const image = get(ANNOTATIONS.image) ?? defaults.image;
  if (image === '' || /\s/.test(image)) {
    problems.push(`${ANNOTATIONS.image} "${image}" is not an image reference; give one like registry.example.com/secrets-agent:0.1.0`);
  }
  const quantity = (key: string, fallback: string | undefined): string | undefined => {
    const v = get(key) ?? fallback;
    if (v !== undefined && !QUANTITY.test(v)) problems.push(`${key} "${v}" is not a Kubernetes quantity; give one like ${key.endsWith('cpu-request') ? '20m' : '140Mi'}`);
    return v;
  };
  const cpu = quantity(ANNOTATIONS.cpuRequest, AGENT_RESOURCES.requests.cpu);
  const memory = quantity(ANNOTATIONS.memoryRequest, AGENT_RESOURCES.requests.memory);
  const limit = quantity(ANNOTATIONS.memoryLimit, AGENT_RESOURCES.limits.memory);
  if (problems.length > 0) return { problems };
  const custom = [ANNOTATIONS.cpuRequest, ANNOTATIONS.memoryRequest, ANNOTATIONS.memoryLimit].some((k) => annotations[k] !== undefined);
  return {
    problems,
    opts: {
      image,
      configData: {},
      configMap: config!,
      outputDir,
      port,
      ...(envMode === 'fileKeyRef' || envMode === 'entrypoint' ? { envMode } : {}),
      ...(targets.length > 0 ? { targets: targets.map((name) => ({ name, ...(keys.has(name) ? { keys: keys.get(name)! } : {}) })) } : {}),
      ...(custom ? { resources: { requests: { cpu: cpu!, memory: memory! }, limits: { memory: limit! } } } : {}),
    },
  };
}

/** Pods of a Job (and so of a CronJob) run to completion: the agent is a plain init container there. */
function ownedByJob(pod: Obj): boolean {
  const meta = isObj(pod['metadata']) ? pod['metadata'] : {};
  const owners = Array.isArray(meta['ownerReferences']) ? meta['ownerReferences'] : [];
  return owners.some((o) => isObj(o) && o['controller'] === true && o['kind'] === 'Job' && str(o['apiVersion'])?.startsWith('batch/') === true);
}

function hasAgent(spec: Obj): boolean {
  return ['initContainers', 'containers'].some((k) => Array.isArray(spec[k]) && (spec[k] as unknown[]).some((c) => isObj(c) && c['name'] === AGENT_CONTAINER));
}

export interface Mutation {
  /** The mutated pod (undefined when refused). */
  readonly pod?: Obj;
  readonly diagnostics: readonly Diagnostic[];
}

/** The pod with the agent added, exactly as inject adds it to a pod spec. */
export function mutatePod(pod: Obj, opts: InjectOptions, where: string): Mutation {
  const diagnostics: Diagnostic[] = [];
  const doc = new Document(pod);
  const spec = doc.get('spec', true) as YAMLMap;
  const namespace = str((pod['metadata'] as Obj | undefined)?.['namespace']);
  mutatePodSpec(spec, opts, {
    doc,
    kind: 'Pod',
    batch: ownedByJob(pod),
    ...(namespace === undefined ? {} : { namespace }),
    say: (severity, path, message) => diagnostics.push({ severity, file: `${where}: spec.${path.join('.')}`, message }),
  });
  if (diagnostics.some((d) => d.severity === 'fatal' || d.severity === 'unconverted')) return { diagnostics };
  return { pod: doc.toJS() as Obj, diagnostics };
}

export function review(text: string, defaults: ReviewOptions): ReviewOutcome {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return invalid(`the request body is not JSON (${(err as Error).message}): POST an AdmissionReview (admission.k8s.io/v1)`);
  }
  if (!isObj(body)) return invalid('the request body is not a JSON object: POST an AdmissionReview (admission.k8s.io/v1)');
  if (body['apiVersion'] !== 'admission.k8s.io/v1' || body['kind'] !== 'AdmissionReview') {
    return invalid(`the request is ${JSON.stringify(str(body['apiVersion']) ?? null)} ${JSON.stringify(str(body['kind']) ?? null)}, not an AdmissionReview admission.k8s.io/v1: set admissionReviewVersions: ["v1"] in the MutatingWebhookConfiguration`);
  }
  const request = body['request'];
  if (!isObj(request)) return invalid('the AdmissionReview has no request object');
  const uid = request['uid'];
  if (typeof uid !== 'string' || uid === '') return invalid('the AdmissionReview has no request.uid to answer to');

  const answer = (result: ReviewResultName, response: Obj, log: Obj): ReviewOutcome => ({
    status: 200,
    result,
    body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...response } }),
    log: { uid, ...log, result },
  });
  const namespace = str(request['namespace']);
  const kind = isObj(request['kind']) ? request['kind'] : {};
  const isPodCreate = kind['group'] === '' && kind['version'] === 'v1' && kind['kind'] === 'Pod' && request['operation'] === 'CREATE' && !request['subResource'];
  if (!isPodCreate) return answer('skipped', { allowed: true }, { namespace, reason: 'not a Pod CREATE' });

  const pod = request['object'];
  if (!isObj(pod) || !isObj(pod['spec'])) {
    const message = `secrets-agent webhook: the AdmissionReview's request.object is ${pod === undefined ? 'missing' : 'not a Pod with a spec'}; the API server sends the Pod for CREATE (check the webhook's rules: operations [CREATE], resources [pods])`;
    return answer('denied', { allowed: false, status: { code: 400, message } }, { namespace, reason: 'no request.object' });
  }
  const meta = isObj(pod['metadata']) ? pod['metadata'] : {};
  const name = str(meta['name']) || (str(meta['generateName']) ? `${str(meta['generateName'])}*` : '?');
  const where = `pod ${namespace ?? str(meta['namespace']) ?? ''}/${name}`;
  const annotations = isObj(meta['annotations']) ? meta['annotations'] : {};
  const labels = isObj(meta['labels']) ? meta['labels'] : {};
  // The label selects (the MutatingWebhookConfiguration's objectSelector); the annotation, when present, decides.
  const optIn = annotations[ANNOTATIONS.inject] ?? (labels[ANNOTATIONS.inject] === 'true' ? 'true' : undefined);
  const logged = { namespace, pod: name };
  if (optIn === undefined || optIn === 'false') return answer('skipped', { allowed: true }, { ...logged, reason: `no ${ANNOTATIONS.inject}: "true"` });
  const deny = (problems: readonly string[], reason: string): ReviewOutcome =>
    answer('denied', { allowed: false, status: { code: 400, message: `secrets-agent webhook: ${where}: ${problems.join('; ')}` } }, { ...logged, reason });
  if (optIn !== 'true') return deny([`${ANNOTATIONS.inject} is ${JSON.stringify(optIn)}: set it to "true" to add the agent, or "false" (or remove it) to leave the pod alone`], 'bad annotation');
  if (hasAgent(pod['spec'])) return answer('skipped', { allowed: true }, { ...logged, reason: 'the pod already has the agent' });

  const { opts, problems } = fromAnnotations(annotations, defaults);
  if (!opts) return deny(problems, 'bad annotation');
  const mutation = mutatePod(pod, opts, where);
  if (!mutation.pod) {
    const refused = mutation.diagnostics.filter((d) => d.severity !== 'note').map((d) => `${d.file}: ${d.message}`);
    return deny([`the agent cannot serve this pod: ${refused.join('; ')}`], 'cannot inject');
  }
  const patch = jsonpatch.compare(pod, mutation.pod);
  const encoded = JSON.stringify(patch);
  // The check: the patch applied to the pod the API server holds gives the mutated pod, or nothing is sent.
  // (In place: `pod` is this request's own parse, used no further; compare's operations carry their own copies.)
  const applied = jsonpatch.applyPatch(pod, patch, false, true).newDocument;
  if (!isDeepStrictEqual(applied, mutation.pod)) throw new Error('the JSON Patch does not turn the pod into the mutated pod');
  const warnings = mutation.diagnostics.filter((d) => d.severity === 'note').map((d) => `secrets-agent: ${d.message}`);
  return answer(
    'mutated',
    { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(encoded).toString('base64'), ...(warnings.length > 0 ? { warnings } : {}) },
    { ...logged, operations: patch.length, batch: ownedByJob(applied) },
  );
}
