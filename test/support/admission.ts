// What the API server does around the admission webhook, for tests and the
// bench (there is no API server here): the Pod a controller would create from
// a workload's pod template (with the ownerReference a Job's pod carries), the
// AdmissionReview v1 it would send, an HTTPS POST of it, and the JSON Patch of
// the answer applied to the Pod (fast-json-patch, the library the webhook uses).
import { request, type Agent } from 'node:https';
import jsonpatch from 'fast-json-patch';
import type { RunningAgent } from './cli.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** Where each kind keeps its pod template (as inject.ts's WORKLOADS). */
export const TEMPLATE: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** The kind of the controller that creates the workload's pods (the Job for a CronJob). */
const OWNER: Record<string, { apiVersion: string; kind: string }> = {
  Deployment: { apiVersion: 'apps/v1', kind: 'ReplicaSet' },
  ReplicaSet: { apiVersion: 'apps/v1', kind: 'ReplicaSet' },
  StatefulSet: { apiVersion: 'apps/v1', kind: 'StatefulSet' },
  DaemonSet: { apiVersion: 'apps/v1', kind: 'DaemonSet' },
  Job: { apiVersion: 'batch/v1', kind: 'Job' },
  CronJob: { apiVersion: 'batch/v1', kind: 'Job' },
};

/** The pod spec of a workload or Pod. */
export function podSpecOf(o: Obj): Obj | undefined {
  if (o.kind === 'Pod') return o.spec as Obj;
  const path = TEMPLATE[o.kind as string];
  return path ? (path.reduce((v: Obj | undefined, k) => v?.[k], o)?.spec as Obj | undefined) : undefined;
}

/**
 * The Pod the workload's controller would create, as the API server shows it
 * to admission: the template's metadata and spec, the namespace, a
 * generateName, the controller's ownerReference; plus `annotations`.
 */
export function podOf(o: Obj, annotations: Record<string, string>, labels: Record<string, string> = { 'secrets-agent.io/inject': 'true' }): Obj {
  const namespace = (o.metadata?.namespace as string | undefined) ?? 'default';
  if (o.kind === 'Pod') {
    const pod = structuredClone(o);
    pod.metadata = { ...pod.metadata, namespace, labels: { ...pod.metadata?.labels, ...labels }, annotations: { ...pod.metadata?.annotations, ...annotations } };
    return pod;
  }
  const template = structuredClone(TEMPLATE[o.kind as string]!.reduce((v: Obj, k) => v[k] as Obj, o));
  const owner = OWNER[o.kind as string]!;
  const meta = (template.metadata ?? {}) as Obj;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...meta,
      generateName: `${o.metadata?.name as string}-`,
      namespace,
      labels: { ...meta.labels, ...labels },
      annotations: { ...meta.annotations, ...annotations },
      ownerReferences: [{ ...owner, name: `${o.metadata?.name as string}-1`, uid: '00000000-0000-0000-0000-000000000001', controller: true, blockOwnerDeletion: true }],
    },
    spec: template.spec,
  };
}

/** The AdmissionReview v1 the API server sends for a Pod CREATE. */
export function reviewOf(pod: Obj, uid = '705ab4f5-6393-11e8-b7cc-42010a800002'): Obj {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: pod.metadata?.name ?? '',
      namespace: pod.metadata?.namespace,
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json?: Obj;
  /** The peer certificate's fingerprint (which certificate served this request). */
  fingerprint?: string;
}

export interface PostOptions {
  ca: string | string[];
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  agent?: Agent | false;
  timeoutMs?: number;
}

/** An HTTPS request to the webhook, trusting only `ca`. */
export function post(base: { host: string; port: number }, body: string | Buffer, options: PostOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: base.host,
        port: base.port,
        path: options.path ?? '/mutate',
        method: options.method ?? 'POST',
        ca: options.ca,
        agent: options.agent ?? false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...options.headers },
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate?.()?.fingerprint256;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Obj | undefined;
          try {
            json = JSON.parse(text) as Obj;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, ...(json ? { json } : {}), ...(fingerprint ? { fingerprint } : {}) });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** The pod with the answer's JSON Patch applied (fast-json-patch; validated against the pod first). */
export function applyAnswer(pod: Obj, answer: Obj): { pod: Obj; patch: jsonpatch.Operation[] } {
  const response = answer.response as Obj;
  if (!response.patch) return { pod: structuredClone(pod), patch: [] };
  if (response.patchType !== 'JSONPatch') throw new Error(`patchType ${String(response.patchType)}`);
  const patch = JSON.parse(Buffer.from(response.patch as string, 'base64').toString('utf8')) as jsonpatch.Operation[];
  const error = jsonpatch.validate(patch, structuredClone(pod));
  if (error) throw error;
  return { pod: jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument, patch };
}

/** The addresses from the webhook's start-up log line (it listens on port 0 in tests). */
export async function webhookAddresses(agent: RunningAgent): Promise<{ https: { host: string; port: number }; metrics: string }> {
  await agent.waitFor(/"msg":"serving admission reviews/);
  const line = agent.output().stderr.split('\n').find((l) => l.includes('"msg":"serving admission reviews'))!;
  const rec = JSON.parse(line) as { address: string; metricsAddress: string };
  const [, host, port] = /^(.*):(\d+)$/.exec(rec.address)!;
  return { https: { host: host!, port: Number(port) }, metrics: `http://${rec.metricsAddress}` };
}
