// Case 2: memory. RSS of `run` with 10 secrets after >= 1,000 refresh cycles
// (every secret checked >= 1,000 times, 10 ms interval), while one secret
// rotates every 250 ms so renders, writes and notifications run too; then with
// 1,000 secrets. Each variant (bundle or source, V8 flags, compile cache) is
// a separate process; an empty `node` process is the floor nothing can go under.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy } from '../support/proxy.ts';
import { warmCompileCache } from './bundles.ts';
import { selfSignedCert, type TestCert } from '../support/tls.ts';
import {
  agentVariants,
  commandOf,
  extraFlagSets,
  withFlags,
  createSecrets,
  DescribeStandIn,
  heapFromMetrics,
  rotate,
  secretValue,
  startRun,
  Tally,
  writeConfig,
  type BenchContext,
  type Created,
  type Variant,
} from './fixtures.ts';
import { cpuSeconds, median, memory, round, start, until, type Memory } from './lib.ts';

export interface MemoryRow extends Memory {
  label: string;
  command: string;
  secrets: number;
  /** Full check cycles (every secret checked once) during the measured window. */
  cycles: number;
  seconds: number;
  /** CPU (user + system) per full check cycle, ms. */
  cpuMsPerCycle: number;
  /** RSS when a tenth of the cycles were done: RSS growth after that points at a leak. */
  rssAtTenthMB: number;
  /** RssAnon (private) when a tenth of the cycles were done. */
  anonAtTenthMB: number;
  heapUsedMB?: number;
  externalMB?: number;
  /** Rotations made during the window, and the GetSecretValue calls they caused. */
  rotations?: number;
  getSecretValue?: number;
}

export interface MemoryResult {
  intervalMs: number;
  /** The label of the variant recommended for the image. */
  recommended: string;
  rows: MemoryRow[];
  /** An empty node process (`setInterval`): what any Node.js program starts from. */
  emptyNode: Memory;
  /**
   * node with the image's flags, the built-ins such an agent cannot do without
   * loaded (an HTTP server listening for /metrics, an HTTPS client for AWS,
   * crypto for SigV4, child_process for exec targets, fs/promises, perf_hooks,
   * worker_threads and stream as pino and the SDK use them), and nothing else.
   */
  builtinsFloor: Memory;
  notes: string[];
}

async function nodeAt(args: string[]): Promise<Memory> {
  const p = start(process.execPath, args);
  await sleep(1500);
  const m = memory(p.pid);
  await p.stop();
  return m;
}

const emptyNode = (): Promise<Memory> => nodeAt(['-e', 'setInterval(() => {}, 1000)']);

const BUILTINS_FLOOR = [
  "for (const m of ['https', 'tls', 'crypto', 'child_process', 'fs/promises', 'perf_hooks', 'worker_threads', 'stream']) require(m);",
  "require('http').createServer((q, s) => s.end()).listen(0, '127.0.0.1');",
  "new (require('https').Agent)({ keepAlive: true });",
  "require('crypto').createHmac('sha256', 'k').update('x').digest('hex');",
  'setInterval(() => {}, 1000);',
].join(' ');

const builtinsFloor = (flags: readonly string[]): Promise<Memory> => nodeAt([...flags, '-e', BUILTINS_FLOOR]);

export async function memoryCase(ctx: BenchContext): Promise<MemoryResult> {
  const notes: string[] = [];
  const intervalMs = 10;
  const cycles = ctx.quick ? 10 : 1000;
  const n = ctx.quick ? 3 : 10;
  const secrets = await createSecrets(ctx.moto, Array.from({ length: n }, (_, i) => `bench/mem/s${String(i).padStart(2, '0')}`));
  const standIn = await DescribeStandIn.capture(ctx.moto, secrets[0] as Created);

  // The app the agent signals after each write: a shell ignoring SIGHUP.
  const app = spawn('sh', ['-c', 'trap "" HUP; while :; do sleep 1; done'], { stdio: 'ignore' });
  const pidFile = join(ctx.root, 'mem-app.pid');
  await writeFile(pidFile, String(app.pid));

  const { bundle, source, recommended } = agentVariants(ctx);
  // Each flag alone on the bundle, then the recommendation; BENCH_FLAGS adds more.
  // BENCH_MEMORY=image: only the image's command line (the goals' rows), for quick before/after comparisons.
  const imageOnly = process.env.BENCH_MEMORY === 'image';
  const variants = ctx.quick
    ? [bundle]
    : imageOnly
      ? [recommended, ...extraFlagSets().map((f) => withFlags(recommended, [...ctx.imageFlags, ...f]))]
      : [
        bundle,
        source,
        withFlags(bundle, ['--max-semi-space-size=1']),
        withFlags(bundle, ['--max-semi-space-size=1', '--max-old-space-size=32']),
        withFlags(bundle, ['--lite-mode']),
        recommended,
        ...extraFlagSets().map((f) => withFlags(bundle, f)),
      ];
  // The image's variants share its compile cache, which Node keys by the V8 flags:
  // warm it for each extra flag set too, or those rows would compare a cold start
  // (without a cache, RssAnon is ~9 MB higher) with a cached one.
  const cache = recommended.env?.NODE_COMPILE_CACHE;
  if (imageOnly && cache) await warmCompileCache(recommended.entry, cache, extraFlagSets().map((f) => [...ctx.imageFlags, ...f]));
  const rows: MemoryRow[] = [];
  try {
    for (const v of variants) rows.push(await measure(ctx, v, secrets, standIn, { intervalMs, cycles, pidFile, rotations: true }));
    // AWS endpoints are HTTPS: the image's run again through a TLS proxy (TLS
    // sessions, the root certificate store), trusting its certificate.
    if (!ctx.quick) {
      const tls = await selfSignedCert(ctx.root);
      const overTls: Variant = { ...recommended, label: `${recommended.label}, over HTTPS`, env: { ...recommended.env, NODE_EXTRA_CA_CERTS: tls.caFile } };
      rows.push(await measure(ctx, overTls, secrets, standIn, { intervalMs, cycles, pidFile, rotations: true, tls }));
    }
    // 1,000 secrets: a few cycles (each is 1,000 checks) at a 1 s interval.
    const many = await ctx.many();
    for (const v of ctx.quick ? [bundle] : imageOnly ? [recommended] : [bundle, recommended]) {
      rows.push(await measure(ctx, v, many, standIn, { intervalMs: 1000, cycles: ctx.quick ? 1 : 3, pidFile, rotations: false }));
    }
  } finally {
    app.kill('SIGKILL');
  }
  notes.push(
    'DescribeSecret answered by a stand-in at the proxy with moto\'s answer shape (moto serves ~130 requests/s here); STS, BatchGetSecretValue and GetSecretValue go to moto.',
  );
  return { intervalMs, recommended: recommended.label, rows, emptyNode: await emptyNode(), builtinsFloor: await builtinsFloor(ctx.imageFlags), notes };
}

async function measure(
  ctx: BenchContext,
  v: Variant,
  secrets: readonly Created[],
  standIn: DescribeStandIn,
  o: { intervalMs: number; cycles: number; pidFile: string; rotations: boolean; tls?: TestCert },
): Promise<MemoryRow> {
  const n = secrets.length;
  for (const s of secrets) standIn.set(s);
  const proxy = await startProxy(ctx.moto.url, o.tls ? { tls: o.tls } : {});
  standIn.attach(proxy);
  const tally = new Tally(proxy);
  const dir = join(ctx.root, `mem-${n}-${v.label.replace(/[^a-z0-9]+/gi, '-')}`);
  const name = (s: Created): string => s.id.split('/').pop() as string;
  const config = await writeConfig(dir, {
    outputDir: join(dir, 'out'),
    interval: `${o.intervalMs}ms`,
    secrets: secrets.map((s) => ({ name: name(s), id: s.id })),
    files: [
      ...secrets.map((s) => `  - { path: ${name(s)}.json, secret: ${name(s)} }`),
      // One template using a few secrets, as a real app config would.
      `  - path: app.env\n    template: "${secrets
        .slice(0, 5)
        .map((s) => `${name(s).toUpperCase()}_PASSWORD={{ secrets.${name(s)}.password }}`)
        .join('\\n')}"`,
    ],
    notify: [`  - { signal: SIGHUP, pidFile: ${JSON.stringify(o.pidFile)} }`],
  });
  const { proc, metricsUrl } = await startRun(ctx, v, config, proxy.url);
  let rotating = o.rotations;
  let rotated = 0;
  const rotations = (async () => {
    for (let i = 0; rotating; i++) {
      await sleep(250);
      if (!rotating) break;
      const s = secrets[i % n] as Created;
      await rotate(ctx.moto, s, secretValue(i, i + 1));
      standIn.set(s);
      rotated++;
    }
  })();
  try {
    // The first look (rotationAware) and the first cycles: let them pass, then measure.
    await sleep(300);
    tally.reset();
    const cpu0 = cpuSeconds(proc.pid);
    const t0 = Date.now();
    let tenth: Memory | undefined;
    // RssAnon moves by a few MB with the garbage collector's phase (the V8 heap
    // grows until a GC, then shrinks): one reading at the end would be luck. The
    // row's memory is the median of the readings over the last tenth of the cycles.
    const last: Memory[] = [];
    await until(
      `${o.cycles} check cycles`,
      () => {
        const checks = tally.get('DescribeSecret');
        if (!tenth && checks >= (o.cycles * n) / 10) tenth = memory(proc.pid);
        if (checks >= (o.cycles * n * 9) / 10) last.push(memory(proc.pid));
        return checks >= o.cycles * n;
      },
      600_000,
      50,
    );
    const seconds = (Date.now() - t0) / 1000;
    const cpu = cpuSeconds(proc.pid) - cpu0;
    const done = tally.get('DescribeSecret') / n;
    rotating = false;
    await rotations;
    const end = memory(proc.pid);
    const med = (f: (m: Memory) => number): number => round(median([...last, end].map(f)), 2);
    const mem: Memory = { rssMB: med((m) => m.rssMB), hwmMB: end.hwmMB, anonMB: med((m) => m.anonMB), fileMB: med((m) => m.fileMB), pssMB: med((m) => m.pssMB) };
    const heap = await heapFromMetrics(metricsUrl);
    return {
      label: v.label,
      command: commandOf(v, 'run'),
      secrets: n,
      cycles: round(done),
      seconds: round(seconds, 1),
      cpuMsPerCycle: round((cpu * 1000) / done, 2),
      ...mem,
      rssAtTenthMB: (tenth ?? mem).rssMB,
      anonAtTenthMB: (tenth ?? mem).anonMB,
      ...heap,
      ...(o.rotations ? { rotations: rotated, getSecretValue: tally.get('GetSecretValue') } : {}),
    };
  } finally {
    rotating = false;
    await rotations.catch(() => undefined);
    await proc.stop();
    await proxy.close();
  }
}
