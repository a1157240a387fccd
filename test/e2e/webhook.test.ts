// `secrets-agent webhook` at the level the API server sees it: the real CLI,
// real HTTPS (a self-signed certificate made by openssl), AdmissionReviews
// built from real pod specs. There is no API server here: test/support/
// admission.ts builds the Pod a controller would create and the review the API
// server would send, and applies the answer's JSON Patch as it would.
//
// - The same mutation as `inject`: for every workload of the k8s-examples
//   (without their agent), inject's fixtures (every kind), the ESO
//   tutorial's Deployment and the env-files one (env and envFrom of a replaced
//   Secret, in both env modes), the Pod the webhook's patch makes has exactly the
//   spec of the pod template `inject` prints for the same workload and
//   options, and validates against the Kubernetes schemas (kubernetes-models).
//   inject names its ConfigMap by the config's hash; the webhook mounts the one
//   the pod's secrets-agent.io/config names: the test names inject's, so the
//   pods are equal with no exception.
// - Opt-in, idempotence, refusals naming the annotation, malformed reviews
//   (HTTP status or a denied answer echoing the uid), never a crash, a canary
//   env value that appears nowhere in the logs or answers.
// - Certificate rotation while requests flow: no failed request.
// - SIGTERM with a review in flight: it is answered, then the process exits 0.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { applyAnswer, podOf, podSpecOf, post, reviewOf, TEMPLATE, webhookAddresses } from '../support/admission.ts';
import { AGENT_RESOURCES } from '../../agent/deploy.ts';
import { REPO, runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAgent, stopAll } from '../support/procs.ts';
import { selfSignedCert, type TestCert } from '../support/tls.ts';
import { waitUntil } from '../support/wait.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;
const IMAGE = 'registry.example.com/tools/secrets-agent:0.1.0';
const CONFIG = 'k8s-examples/kustomize/example/config.yaml';
const CANARY = 'canary-8d1f2c0e-webhook-value';

const docsOf = (text: string): Obj[] => parseAllDocuments(text).map((d) => {
  assert.deepEqual(d.errors, []);
  return d.toJS() as Obj;
}).filter((o) => o !== null);
const isWorkload = (o: Obj): boolean => o.kind === 'Pod' || TEMPLATE[o.kind] !== undefined;

async function validatePod(pod: Obj): Promise<void> {
  const { Pod } = (await import('kubernetes-models/v1/Pod')) as { Pod: new (d: unknown) => { validate(): void } };
  new Pod(pod).validate();
}

/** The workload as it was before the agent was added to it (the k8s-examples ship with the agent): no agent, none of its volumes. */
function withoutAgent(o: Obj): Obj {
  const copy = structuredClone(o);
  const spec = podSpecOf(copy);
  if (!spec) return copy;
  const all = [...((spec.initContainers ?? []) as Obj[]), ...((spec.containers ?? []) as Obj[])];
  const agentVolumes = new Set(all.filter((c) => c.name === 'secrets-agent').flatMap((c) => ((c.volumeMounts ?? []) as Obj[]).map((m) => m.name as string)));
  for (const key of ['initContainers', 'containers']) {
    if (!spec[key]) continue;
    spec[key] = (spec[key] as Obj[]).filter((c) => c.name !== 'secrets-agent');
    for (const c of spec[key] as Obj[]) {
      if (!c.volumeMounts) continue;
      c.volumeMounts = (c.volumeMounts as Obj[]).filter((m) => !agentVolumes.has(m.name as string));
      if (c.volumeMounts.length === 0) delete c.volumeMounts;
    }
    if ((spec[key] as Obj[]).length === 0) delete spec[key];
  }
  if (spec.volumes) spec.volumes = (spec.volumes as Obj[]).filter((v) => !agentVolumes.has(v.name as string));
  return copy;
}

describe('secrets-agent webhook', () => {
  let dir: string;
  let cert: TestCert;
  let agent: RunningAgent | undefined;
  let https: { host: string; port: number };
  let metrics: string;
  const send = (body: string | Buffer, options: Partial<Parameters<typeof post>[2]> = {}) => post(https, body, { ca: cert.cert, ...options });
  const review = async (pod: Obj, uid?: string): Promise<Obj> => {
    const r = await send(JSON.stringify(reviewOf(pod, uid)));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['content-type'], 'application/json');
    return r.json!;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-webhook-'));
    cert = await selfSignedCert(dir);
    agent = startAgent(['webhook', '--tls-cert-file', join(dir, 'tls.crt'), '--tls-private-key-file', join(dir, 'tls.key'), '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--image', IMAGE, '--shutdown-delay', '0']);
    ({ https, metrics } = await webhookAddresses(agent));
  });
  after(async () => {
    await stopAll([agent]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * inject and the webhook on the same workloads: each workload's pod, as the
   * webhook patches it, has the spec inject gives its template (or, when
   * inject cannot carry something over, the webhook denies the pod, saying the same).
   */
  async function sameAsInject(label: string, files: string[], args: string[], annotations: (cm: string) => Record<string, string>): Promise<number> {
    const workloads: Obj[] = [];
    for (const f of files) workloads.push(...docsOf(await readFile(resolve(REPO, f), 'utf8')).filter(isWorkload).map(withoutAgent));
    let n = 0;
    for (const [i, w] of workloads.entries()) {
      const where = `${label}: ${w.kind}/${w.metadata?.name}`;
      // inject, one workload at a time (its exit code and diagnostics are this workload's).
      const file = join(dir, `${label}-${i}.yaml`);
      await writeFile(file, JSON.stringify(w));
      const r = await runAgent(['inject', ...args, '--image', IMAGE, file]);
      assert.ok(r.code === 0 || r.code === 1, `${where}: inject exited ${r.code}: ${r.stderr}`);
      const out = docsOf(r.stdout);
      const cm = out.find((o) => o.kind === 'ConfigMap')!.metadata.name as string;
      const injected = out.find(isWorkload)!;
      const pod = podOf(w, annotations(cm));
      const answer = await review(pod, `uid-${label}-${i}`);
      const response = answer.response as Obj;
      assert.equal(response.uid, `uid-${label}-${i}`, `${where}: the uid is echoed`);
      if (r.code === 1) {
        // inject listed what it could not carry over: the webhook refuses the pod, saying the same.
        assert.equal(response.allowed, false, `${where}: inject could not convert everything, so the webhook denies`);
        assert.match(response.status.message, /cannot serve this pod/);
        const listed = [...r.stderr.matchAll(/: not converted: (.*)$/gm)].map((m) => m[1]!);
        assert.ok(listed.length > 0, r.stderr);
        for (const m of listed) assert.ok((response.status.message as string).includes(m), `${where}: the denial says what inject says: ${m}`);
        continue;
      }
      assert.equal(response.allowed, true, `${where}: ${JSON.stringify(response.status)}`);
      const { pod: mutated } = applyAnswer(pod, answer);
      await validatePod(mutated);
      assert.deepEqual(mutated.spec, podSpecOf(injected), `${where}: the webhook's pod spec is inject's`);
      assert.deepEqual(mutated.metadata, pod.metadata, `${where}: the patch leaves the metadata alone`);
      n++;
    }
    return n;
  }

  it('gives every k8s-examples workload (without its agent) the pod spec inject gives it', async () => {
    const files = ['k8s-examples/init-container.yaml', 'k8s-examples/native-sidecar.yaml', 'k8s-examples/job.yaml', 'k8s-examples/classic-sidecar-nginx.yaml', 'k8s-examples/kustomize/example/deployment.yaml'];
    const n = await sameAsInject('examples', files, ['--config', CONFIG], (cm) => ({ 'secrets-agent.io/config': cm }));
    assert.equal(n, 6, 'Deployment x4, Job, CronJob');
  });

  it('gives every kind of inject\'s fixtures (Job and CronJob pods: the plain init container) the pod spec inject gives it', async () => {
    const n = await sameAsInject('kinds', ['test/fixtures/inject/workloads.yaml'], ['--config', CONFIG], (cm) => ({ 'secrets-agent.io/config': cm, 'secrets-agent.io/output-dir': '/run/secrets/app', 'secrets-agent.io/port': '9102' }));
    assert.equal(n, 7);
  });

  it('replaces the ESO tutorial\'s Secret as inject --from-eso does (secrets-agent.io/replaces-secret)', async () => {
    const eso = ['--from-eso', 'examples/eso/secretstore.yaml', '--from-eso', 'examples/eso/externalsecret.yaml'];
    const n = await sameAsInject('eso', ['examples/eso/deployment.yaml'], eso, (cm) => ({ 'secrets-agent.io/config': cm, 'secrets-agent.io/replaces-secret': 'db-credentials' }));
    assert.equal(n, 1);
    // Two targets, env and envFrom from them (fileKeyRef on their env files), the keys given as inject knows them.
    const several = await sameAsInject('eso-several', ['test/fixtures/inject/pod-several.yaml'], ['--from-eso', 'test/fixtures/inject/eso-several.yaml'], (cm) => ({ 'secrets-agent.io/config': cm, 'secrets-agent.io/replaces-secret': 'db, api-key', 'secrets-agent.io/secret-keys': 'api-key=key; db=password' }));
    assert.equal(several, 1);
    // The env-files tutorial's Deployment (env and envFrom of one target), both env modes; entrypoint needs the app's command.
    const keys = 'db-credentials=DB_PASSWORD,GREETING,DB_JSON,API_TOKEN,CERT';
    const envEso = ['--from-eso', 'test/fixtures/inject/env/eso.yaml'];
    const tutorial = (cm: string, more: Record<string, string> = {}) => ({ 'secrets-agent.io/config': cm, 'secrets-agent.io/replaces-secret': 'db-credentials', 'secrets-agent.io/secret-keys': keys, ...more });
    assert.equal(await sameAsInject('env', ['test/fixtures/inject/env/deployment.yaml'], envEso, (cm) => tutorial(cm)), 1);
    const withCommand = docsOf(await readFile(join(REPO, 'test/fixtures/inject/env/deployment.yaml'), 'utf8')).find(isWorkload)!;
    withCommand.spec.template.spec.containers[0].command = ['/app/web', '--serve'];
    await writeFile(join(dir, 'env-command.yaml'), JSON.stringify(withCommand));
    assert.equal(await sameAsInject('env-entrypoint', [join(dir, 'env-command.yaml')], [...envEso, '--env-mode', 'entrypoint'], (cm) => tutorial(cm, { 'secrets-agent.io/env-mode': 'entrypoint' })), 1);
    // pod-several has no command: inject lists it, and the webhook denies the pod saying the same.
    const entrypoint = await sameAsInject('eso-entrypoint', ['test/fixtures/inject/pod-several.yaml'], ['--from-eso', 'test/fixtures/inject/eso-several.yaml', '--env-mode', 'entrypoint'], (cm) => ({ 'secrets-agent.io/config': cm, 'secrets-agent.io/replaces-secret': 'db, api-key', 'secrets-agent.io/secret-keys': 'api-key=key; db=password', 'secrets-agent.io/env-mode': 'entrypoint' }));
    assert.equal(entrypoint, 0);
  });

  it('keeps the pod\'s own init containers, volumes and sidecars, and takes image and resources from annotations', async () => {
    const pod = podOf(
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'app', namespace: 'shop', annotations: { keep: 'me' } },
        spec: {
          initContainers: [
            { name: 'migrate', image: 'registry.example.com/migrate:1' },
            { name: 'proxy', image: 'registry.example.com/proxy:1', restartPolicy: 'Always' },
          ],
          containers: [{ name: 'app', image: 'registry.example.com/app:1', env: [{ name: 'TOKEN', value: CANARY }], volumeMounts: [{ name: 'cache', mountPath: '/cache' }] }],
          volumes: [{ name: 'cache', emptyDir: {} }],
        },
      },
      { 'secrets-agent.io/config': 'app-agent', 'secrets-agent.io/image': 'registry.example.com/agent:9', 'secrets-agent.io/memory-limit': '300Mi', 'secrets-agent.io/output-dir': '/etc/app' },
    );
    const answer = await review(pod);
    assert.equal(answer.response.allowed, true, JSON.stringify(answer.response));
    const { pod: mutated, patch } = applyAnswer(pod, answer);
    await validatePod(mutated);
    const spec = mutated.spec as Obj;
    assert.deepEqual(spec.initContainers.map((c: Obj) => c.name), ['secrets-agent', 'migrate', 'proxy']);
    assert.deepEqual(spec.initContainers.slice(1), pod.spec.initContainers, 'the pod\'s init containers and sidecars as they were');
    const agentC = spec.initContainers[0] as Obj;
    assert.equal(agentC.image, 'registry.example.com/agent:9');
    assert.deepEqual(agentC.resources, { requests: { ...AGENT_RESOURCES.requests }, limits: { memory: '300Mi' } });
    assert.equal(agentC.restartPolicy, 'Always');
    assert.deepEqual(spec.volumes.map((v: Obj) => v.name), ['cache', 'secrets-agent-files', 'secrets-agent-config']);
    assert.deepEqual(spec.volumes[2].configMap, { name: 'app-agent' }, 'the ConfigMap the annotation names, mounted, not generated');
    assert.deepEqual(spec.containers[0].volumeMounts, [{ name: 'cache', mountPath: '/cache' }, { name: 'secrets-agent-files', mountPath: '/etc/app', readOnly: true }]);
    assert.deepEqual(spec.containers[0].env, pod.spec.containers[0].env);
    for (const op of patch) assert.match(op.path, /^\/spec\/(initContainers|volumes|containers\/0\/volumeMounts)/, `only what the agent needs: ${op.op} ${op.path}`);

    // Idempotent: the mutated pod (a reinvocation, or a pod inject already served) is left alone.
    const again = await review(mutated);
    assert.deepEqual(again.response, { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
  });

  it('leaves pods that do not opt in alone, and lets the annotation opt a labelled pod out', async () => {
    const base = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', namespace: 'shop' }, spec: { containers: [{ name: 'x', image: 'x' }] } };
    for (const [labels, annotations] of [[{}, {}], [{ 'secrets-agent.io/inject': 'true' }, { 'secrets-agent.io/inject': 'false', 'secrets-agent.io/config': 'c' }]] as const) {
      const answer = await review(podOf(base, annotations, labels));
      assert.deepEqual(answer.response, { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
    }
    // The annotation alone opts in (a configuration without the objectSelector).
    const answer = await review(podOf(base, { 'secrets-agent.io/inject': 'true', 'secrets-agent.io/config': 'c' }, {}));
    assert.equal(answer.response.patchType, 'JSONPatch');
  });

  it('denies a pod with a bad annotation, naming the annotation and the fix', async () => {
    const base = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', namespace: 'shop' }, spec: { containers: [{ name: 'x', image: 'x', env: [{ name: 'T', value: CANARY }] }] } };
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{}, /secrets-agent\.io\/config is missing: name the ConfigMap that holds the agent's config\.yaml/],
      [{ 'secrets-agent.io/config': 'Bad_Name' }, /secrets-agent\.io\/config "Bad_Name" is not a ConfigMap name.*give the ConfigMap's metadata\.name/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/port': '99999' }, /secrets-agent\.io\/port "99999" is not a port \(1-65535\); give the port of the config's server\.listen/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/output-dir': 'relative' }, /secrets-agent\.io\/output-dir "relative" is not an absolute path/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/memory-limit': 'lots' }, /secrets-agent\.io\/memory-limit "lots" is not a Kubernetes quantity; give one like 140Mi/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/replaces-secret': 'db,,x' }, /secrets-agent\.io\/replaces-secret "db,,x" is not a comma-separated list of Secret names/],
      [{ 'secrets-agent.io/inject': 'yes', 'secrets-agent.io/config': 'c' }, /secrets-agent\.io\/inject is "yes": set it to "true"/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/replaces-secret': 'db', 'secrets-agent.io/secret-keys': 'api=key' }, /secrets-agent\.io\/secret-keys names "api", which is not in secrets-agent\.io\/replaces-secret/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/replaces-secret': 'db', 'secrets-agent.io/secret-keys': 'db' }, /secrets-agent\.io\/secret-keys part "db" is not SECRET=KEY1,KEY2/],
      [{ 'secrets-agent.io/config': 'c', 'secrets-agent.io/env-mode': 'files' }, /secrets-agent\.io\/env-mode "files" is not fileKeyRef or entrypoint/],
    ];
    for (const [annotations, message] of cases) {
      const answer = await review(podOf(base, annotations), 'u-deny');
      assert.equal(answer.response.uid, 'u-deny');
      assert.equal(answer.response.allowed, false, JSON.stringify(annotations));
      assert.equal(answer.response.status.code, 400);
      assert.match(answer.response.status.message, /^secrets-agent webhook: pod shop\/x: /);
      assert.match(answer.response.status.message, message);
      assert.ok(!JSON.stringify(answer).includes(CANARY));
    }
    // Every problem at once, not the first only.
    const answer = await review(podOf(base, { 'secrets-agent.io/port': 'x', 'secrets-agent.io/cpu-request': '?' }));
    assert.match(answer.response.status.message, /config is missing.*port "x".*cpu-request "\?"/);
  });

  it('answers malformed requests with the right status or a denial echoing the uid, and keeps serving', async () => {
    const cases: Array<[string | Buffer, Partial<Parameters<typeof post>[2]>, number, RegExp]> = [
      ['{not json', {}, 400, /not JSON/],
      ['{"a":1} trailing', {}, 400, /not JSON/],
      ['[1,2]', {}, 400, /not a JSON object/],
      [JSON.stringify({ ...reviewOf({}), apiVersion: 'admission.k8s.io/v1beta1' }), {}, 400, /not an AdmissionReview admission\.k8s\.io\/v1: set admissionReviewVersions: \["v1"\]/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), {}, 400, /no request object/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { object: {} } }), {}, 400, /no request\.uid/],
      ['{}', { headers: { 'content-type': 'text/plain' } }, 415, /unsupported media type "text\/plain"/],
      ['', { method: 'GET' }, 405, /POST an AdmissionReview/],
      ['{}', { path: '/validate' }, 404, /POST \/mutate/],
      [Buffer.alloc(4 * 1024 * 1024, 0x20), {}, 413, /request body over \d+ bytes/],
    ];
    for (const [body, options, status, message] of cases) {
      const r = await send(body, options).catch((err: Error) => assert.fail(`${String(body).slice(0, 40)}: ${err.message}`));
      assert.equal(r.status, status, `${String(body).slice(0, 40)}: ${r.text}`);
      assert.match(r.text, message);
      assert.doesNotMatch(r.text, /\bat \S+ \(|\.ts:\d+/, 'no stack trace');
    }
    // A huge body without content-length (chunked) is cut as it arrives.
    const chunked = await send(Buffer.alloc(5 * 1024 * 1024, 0x20), { headers: { 'content-length': '', 'transfer-encoding': 'chunked' } }).catch((err: Error) => ({ status: -1, text: err.message }));
    assert.ok(chunked.status === 413 || chunked.status === -1, `chunked: ${chunked.status} ${chunked.text}`);
    // A uid but no object: a denial the API server can show.
    const noObject = reviewOf({});
    delete noObject.request.object;
    const r = await send(JSON.stringify(noObject));
    assert.equal(r.status, 200);
    assert.equal(r.json!.response.uid, noObject.request.uid);
    assert.equal(r.json!.response.allowed, false);
    assert.match(r.json!.response.status.message, /request\.object is missing/);
    // Not a Pod CREATE (a misconfigured rule): allowed untouched.
    const update = reviewOf(podOf({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [] } }, { 'secrets-agent.io/config': 'c' }));
    update.request.operation = 'UPDATE';
    assert.deepEqual((await send(JSON.stringify(update))).json!.response, { uid: update.request.uid, allowed: true });
    // Still alive and healthy.
    assert.equal((await fetch(`${metrics}/healthz`)).status, 200);
  });

  it('counts admissions by result and times them on /metrics; never logs a pod\'s values', async () => {
    const text = await (await fetch(`${metrics}/metrics`)).text();
    for (const result of ['mutated', 'skipped', 'denied', 'invalid']) {
      const m = new RegExp(`^secrets_agent_webhook_admissions_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text);
      assert.ok(m && Number(m[1]) > 0, `${result} counted`);
    }
    assert.match(text, /^secrets_agent_webhook_admissions_total\{result="error"\} 0$/m);
    assert.match(text, /^secrets_agent_webhook_review_duration_seconds_bucket\{le="0.05"\} \d+$/m);
    assert.match(text, /^secrets_agent_webhook_review_duration_seconds_count \d+$/m);
    const { stdout, stderr } = agent!.output();
    assert.ok(!`${stdout}${stderr}`.includes(CANARY), 'the canary env value is in the log');
    assert.match(stderr, /"msg":"agent injected"/);
  });

  it('reloads a rotated certificate while requests flow: no request fails', async () => {
    const next = await selfSignedCert(await mkdtemp(join(dir, 'next-')));
    const ca = [cert.cert, next.cert];
    const pod = podOf({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', namespace: 'shop' }, spec: { containers: [{ name: 'x', image: 'x' }] } }, { 'secrets-agent.io/config': 'c' });
    const body = JSON.stringify(reviewOf(pod));
    const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;
    const oldPrint = fingerprint(cert.cert);
    const newPrint = fingerprint(next.cert);
    let stop = false;
    const results: Array<{ status: number; fingerprint?: string } | { error: string }> = [];
    // Four clients, a new TLS connection per request (as the API server opens them after the swap).
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) results.push(await post(https, body, { ca }).catch((err: Error) => ({ error: err.message })));
    });
    await waitUntil('requests on the old certificate', () => results.length > 20);
    // cert-manager's rotation as the kubelet shows it: the files change (here one at a time, the key last).
    await writeFile(join(dir, 'tls.crt.new'), next.cert);
    await rename(join(dir, 'tls.crt.new'), join(dir, 'tls.crt'));
    await new Promise((r) => setTimeout(r, 1500)); // a reload tick with the certificate new and the key old
    await writeFile(join(dir, 'tls.key.new'), next.key);
    await rename(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
    await waitUntil('requests on the new certificate', () => results.slice(-5).every((r) => 'fingerprint' in r && r.fingerprint === newPrint), 15_000);
    stop = true;
    await Promise.all(clients);
    const failed = results.filter((r) => 'error' in r || r.status !== 200);
    assert.deepEqual(failed, [], 'every request succeeded');
    const prints = new Set(results.map((r) => ('fingerprint' in r ? r.fingerprint : undefined)));
    assert.ok(prints.has(oldPrint) && prints.has(newPrint), 'served by both certificates');
    assert.match(agent!.output().stderr, /do not load as a pair; still serving the previous certificate/);
    assert.match(agent!.output().stderr, /TLS certificate reloaded/);
    cert = next;
  });

  it('on SIGTERM answers the review in flight, then exits 0', async () => {
    // A second webhook of its own, so the shared one stays up for the other tests.
    const own = startAgent(['webhook', '--tls-cert-file', join(dir, 'tls.crt'), '--tls-private-key-file', join(dir, 'tls.key'), '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--shutdown-delay', '0']);
    try {
      const { https: at, metrics: m } = await webhookAddresses(own);
      const body = JSON.stringify(reviewOf(podOf({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', namespace: 'shop' }, spec: { containers: [{ name: 'x', image: 'x' }] } }, { 'secrets-agent.io/config': 'c' })));
      // Half the body now, the rest after SIGTERM: the review is in flight when shutdown starts.
      const socket = connect({ host: at.host, port: at.port, ca: cert.cert });
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.write(`POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 100)}`);
      await new Promise((r) => setTimeout(r, 200));
      own.child.kill('SIGTERM');
      await own.waitFor(/shutting down/);
      assert.equal((await fetch(`${m}/readyz`)).status, 503, '/readyz fails once shutdown starts');
      socket.write(body.slice(100));
      await closed;
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /connection: close/i);
      assert.match(answer, /"patchType":"JSONPatch"/);
      const exit = await own.exited;
      assert.equal(exit.code, 0, own.output().stderr);
    } finally {
      await stopAgent(own);
    }
  });

  it('speaks HTTP/1.1 only: a client offering h2 in ALPN gets http/1.1', async () => {
    const socket = connect({ host: https.host, port: https.port, ca: cert.cert, ALPNProtocols: ['h2', 'http/1.1'] });
    try {
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      assert.notEqual(socket.alpnProtocol, 'h2');
      assert.ok(socket.getProtocol() === 'TLSv1.3' || socket.getProtocol() === 'TLSv1.2');
    } finally {
      socket.destroy();
    }
  });

  it('exits 2 with one line to fix for a missing flag, a certificate it cannot load or an address in use', async () => {
    const missing = await runAgent(['webhook', '--tls-cert-file', join(dir, 'tls.crt')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--tls-private-key-file is required/);
    const bad = await runAgent(['webhook', '--tls-cert-file', join(dir, 'nope.crt'), '--tls-private-key-file', join(dir, 'tls.key'), '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /cannot load the TLS certificate --tls-cert-file .*nope\.crt.*: ENOENT; give a PEM certificate and its private key/);
    const busy = await runAgent(['webhook', '--tls-cert-file', join(dir, 'tls.crt'), '--tls-private-key-file', join(dir, 'tls.key'), '--listen', `${https.host}:${https.port}`, '--metrics-listen', '127.0.0.1:0']);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, /cannot listen on --listen .*127\.0\.0\.1:\d+.*: the address is already in use/);
  });
});
