// `npm run bench:webhook`: the admission webhook under a steady load of
// reviews, as the API server would send them: HTTPS with keep-alive
// connections, AdmissionReviews of real pods (the ESO tutorial's Deployment
// and every kind of inject's fixtures, all opted in, so every review is a full
// mutation and patch). Open loop: requests leave at the fixed rate whatever
// the answers do, and each latency counts from its scheduled time, so a stall
// shows up in the tail instead of slowing the load down.
//
// Prints the latency percentiles, the webhook process's CPU (millicores) and
// memory (RSS, peak, PSS) at that rate: the numbers behind the Deployment's
// resources (k8s-examples/webhook/deployment.yaml, docs/webhook.md, Load).
// Numbers from one run on a possibly shared machine: read them, never assert them.
//
//   npm run bench:webhook                              200 reviews/s for 30 s, 8 connections
//   npm run bench:webhook -- --rate=500 --seconds=60 --connections=16
//   npm run bench:webhook -- --without-lite-mode       the image's node flags but --lite-mode
//   BENCH_BUNDLE=path npm run bench:webhook            another bundle
import { Agent } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { podOf, post, reviewOf, TEMPLATE } from '../support/admission.ts';
import { entrypointFlags } from '../support/dockerfile.ts';
import { selfSignedCert } from '../support/tls.ts';
import { ensureBundle } from './fixtures.ts';
import { cpuSeconds, memory, percentile, REPO, round, start, table } from './lib.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const arg = (name: string, fallback: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const v = a ? Number(a.slice(name.length + 3)) : fallback;
  if (!(v > 0)) throw new Error(`--${name} must be a positive number`);
  return v;
};
const RATE = arg('rate', 200);
const SECONDS = arg('seconds', 30);
const WARMUP_S = 3;
const CONNECTIONS = arg('connections', 8);

async function pods(): Promise<Obj[]> {
  const out: Obj[] = [];
  for (const [file, annotations] of [
    ['examples/eso/deployment.yaml', { 'secrets-agent.io/config': 'web-agent', 'secrets-agent.io/replaces-secret': 'db-credentials' }],
    ['test/fixtures/inject/workloads.yaml', { 'secrets-agent.io/config': 'web-agent' }],
  ] as const) {
    for (const d of parseAllDocuments(await readFile(join(REPO, file), 'utf8'))) {
      const o = d.toJS() as Obj | null;
      if (o && (o.kind === 'Pod' || TEMPLATE[o.kind as string])) out.push(podOf(o, annotations));
    }
  }
  return out;
}

/** The review-duration histogram's cumulative buckets (le seconds -> count) from /metrics. */
async function histogram(url: string): Promise<Map<number, number>> {
  const text = await (await fetch(url)).text();
  const out = new Map<number, number>();
  for (const m of text.matchAll(/^secrets_agent_webhook_review_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

async function main(): Promise<void> {
  const notes: string[] = [];
  const bundle = await ensureBundle(notes);
  const entry = bundle ?? join(REPO, 'agent/main.ts');
  // --without-lite-mode: the ENTRYPOINT's flags but --lite-mode (V8's optimizing compiler back), to compare.
  const flags = bundle ? (await entrypointFlags()).filter((f) => !(f === '--lite-mode' && process.argv.includes('--without-lite-mode'))) : [];
  const dir = await mkdtemp(join(tmpdir(), 'sa-bench-webhook-'));
  const cert = await selfSignedCert(dir);
  const proc = start(process.execPath, [...flags, entry, 'webhook', '--tls-cert-file', join(dir, 'tls.crt'), '--tls-private-key-file', join(dir, 'tls.key'), '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--shutdown-delay', '0']);
  try {
    // The log level the Deployment runs with (info: one line per review), so its cost is in the numbers.
    await proc.waitFor(/"msg":"serving admission reviews/);
    const port = Number(/"address":"[^"]*:(\d+)"/.exec(proc.tail())![1]);
    const metricsUrl = `http://${/"metricsAddress":"([^"]*)"/.exec(proc.tail())![1]}/metrics`;
    const bodies = (await pods()).map((p, i) => JSON.stringify(reviewOf(p, `bench-${i}`)));
    const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
    const target = { host: '127.0.0.1', port };
    const latencies: number[] = [];
    let errors = 0;
    let sent = 0;
    const inFlight = new Set<Promise<void>>();
    const run = async (seconds: number, record: boolean): Promise<void> => {
      const t0 = performance.now();
      const total = Math.round(seconds * RATE);
      for (let i = 0; i < total; i++) {
        const due = t0 + (i * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        const body = bodies[sent++ % bodies.length]!;
        const p = post(target, body, { ca: cert.cert, agent }).then(
          (a) => {
            if (a.status !== 200 || a.json?.response?.allowed !== true) errors++;
            else if (record) latencies.push(performance.now() - due);
          },
          () => {
            errors++;
          },
        );
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
      await Promise.all(inFlight);
    };
    await run(WARMUP_S, false);
    const buckets0 = await histogram(metricsUrl);
    const load0 = loadavg()[0]!;
    const cpu0 = cpuSeconds(proc.pid);
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(memory(proc.pid).rssMB), 250);
    const t0 = performance.now();
    await run(SECONDS, true);
    const elapsed = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const cpu = cpuSeconds(proc.pid) - cpu0;
    const mem = memory(proc.pid);
    const buckets1 = await histogram(metricsUrl);
    const served = [...buckets1].map(([le, n]) => [le, n - (buckets0.get(le) ?? 0)] as const);
    const count = served.at(-1)![1];
    // The webhook's own time per review (its histogram, from the request to the answer): the bucket holding the percentile.
    const serverAt = (q: number): string => {
      const hit = served.find(([, n]) => n >= count * q);
      return hit ? (hit[0] === Infinity ? '> 2500' : `<= ${round(hit[0] * 1000, 1)}`) : '?';
    };
    agent.destroy();
    const result = {
      rate: RATE,
      seconds: SECONDS,
      connections: CONNECTIONS,
      reviews: latencies.length,
      errors,
      serverP50Ms: serverAt(0.5),
      serverP99Ms: serverAt(0.99),
      loadavg: [round(load0, 1), round(loadavg()[0]!, 1)],
      p50Ms: round(percentile(latencies, 50), 2),
      p90Ms: round(percentile(latencies, 90), 2),
      p99Ms: round(percentile(latencies, 99), 2),
      maxMs: round(Math.max(...latencies), 2),
      cpuMillicores: round((cpu / elapsed) * 1000),
      rssMaxMB: round(Math.max(...samples, mem.rssMB), 1),
      rssEndMB: mem.rssMB,
      hwmMB: mem.hwmMB,
      pssMB: mem.pssMB,
      entry: bundle ? `bundle with the image's ENTRYPOINT flags (${flags.join(' ')})` : 'source (no bundle)',
    };
    process.stdout.write(`\n## Webhook: ${RATE} reviews/s for ${SECONDS} s (${CONNECTIONS} keep-alive connections), ${result.entry}\n\n`);
    process.stdout.write(
      table(
        ['reviews', 'errors', 'webhook p50 ms', 'webhook p99 ms', 'client p50 ms', 'client p99 ms', 'client max ms', 'CPU millicores', 'RSS max MB', 'RSS end MB', 'peak (HWM) MB', 'PSS MB'],
        [[result.reviews, result.errors, result.serverP50Ms, result.serverP99Ms, result.p50Ms, result.p99Ms, result.maxMs, result.cpuMillicores, result.rssMaxMB, result.rssEndMB, result.hwmMB, result.pssMB]],
        2,
      ) + '\n',
    );
    for (const n of notes) process.stdout.write(`note: ${n}\n`);
    process.stdout.write(`note: webhook = its own histogram (request to answer; the bucket that holds the percentile); client = from each request's scheduled time to its answer, queueing in this process and the machine included (load average ${result.loadavg.join(' -> ')} on ${availableParallelism()} CPUs)\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (errors > 0) process.exitCode = 1;
  } finally {
    await proc.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
