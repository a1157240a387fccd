// Case 3: idle cost. CPU seconds (schedstat, ns) of `run` with 10 secrets at the default
// interval (5m), measured over a window after start-up and scaled to an hour;
// beside it a 1 s interval (every secret checked every second), which gives
// the CPU cost of one check. Both for the bare bundle and as the image runs it
// (its ENTRYPOINT flags: --lite-mode makes each check dearer). The goal (1 mCPU)
// is for the image's command line: idle CPU plus the checks of the defaults.
// The agents run side by side, each behind its own recording proxy.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { agentVariants, commandOf, createSecrets, startRun, Tally, writeConfig, type BenchContext, type Variant } from './fixtures.ts';
import { cpuSecondsFine, memory, round, wakeups, type Proc } from './lib.ts';

export interface IdleRow {
  label: string;
  command: string;
  interval: string;
  windowS: number;
  cpuS: number;
  cpuSPerHour: number;
  /** Times the event-loop thread woke up, per second. */
  wakeupsPerS: number;
  /** API calls in the window by operation. */
  apiCalls: Record<string, number>;
  rssMB: number;
}

export interface IdleResult {
  secrets: number;
  rows: IdleRow[];
  /** Checks per hour at the defaults (10 secrets, 5m): 120. */
  checksPerHour: number;
  /** CPU ms per check of one secret (DescribeSecret, unchanged), from the bundle's 1 s row minus its idle floor. */
  cpuMsPerCheck: number;
  /** The bundle's default-interval CPU s per hour with its checks per hour added. */
  cpuSPerHourDefaultWithChecks: number;
  /** The label of the image's variant (the goal's row). */
  recommended: string;
  /** As the image runs it: idle CPU s per hour at 5m, CPU ms per check, and the two added up. */
  cpuSPerHourImage: number;
  cpuMsPerCheckImage: number;
  cpuSPerHourImageWithChecks: number;
  notes: string[];
}

export async function idleCase(ctx: BenchContext): Promise<IdleResult> {
  const n = 10;
  const windowS = ctx.quick ? 1 : 45;
  const secrets = await createSecrets(ctx.moto, Array.from({ length: n }, (_, i) => `bench/idle/s${String(i).padStart(2, '0')}`));
  const { bundle, recommended } = agentVariants(ctx);
  const probed: Variant = { ...recommended, label: `${recommended.label}, probed (/healthz and /readyz every 10 s, /metrics every 30 s)` };
  const cases: { v: Variant; interval: string | undefined; probes?: boolean }[] = [
    { v: bundle, interval: undefined },
    { v: bundle, interval: '1s' },
    { v: recommended, interval: undefined },
    { v: recommended, interval: '1s' },
    // What a pod adds: Kubernetes' default probe period (10 s) and a 30 s scrape.
    { v: probed, interval: undefined, probes: true },
  ];
  const running: { v: Variant; interval: string; proc: Proc; proxy: Proxy; tally: Tally; metricsUrl: string | undefined; probes: boolean }[] = [];
  let probing = true;
  const probeLoops: Promise<void>[] = [];
  try {
    await Promise.all(
      cases.map(async ({ v, interval, probes }, i) => {
        const proxy = await startProxy(ctx.moto.url);
        const dir = join(ctx.root, `idle-${i}`);
        const config = await writeConfig(dir, {
          outputDir: join(dir, 'out'),
          ...(interval ? { interval } : {}),
          secrets: secrets.map((s) => ({ name: s.id.split('/').pop() as string, id: s.id })),
          files: secrets.map((s) => `  - { path: ${s.id.split('/').pop()}, secret: ${s.id.split('/').pop()} }`),
        });
        const { proc, metricsUrl } = await startRun(ctx, v, config, proxy.url);
        running.push({ v, interval: interval ?? '5m (default)', proc, proxy, tally: new Tally(proxy), metricsUrl, probes: probes ?? false });
      }),
    );
    for (const r of running.filter((x) => x.probes && x.metricsUrl)) {
      const base = (r.metricsUrl as string).replace(/\/metrics$/, '');
      const get = (path: string): Promise<unknown> => fetch(base + path, { signal: AbortSignal.timeout(5000) }).then((res) => res.arrayBuffer()).catch(() => undefined);
      probeLoops.push(
        (async () => {
          for (let t = 0; probing; t += 10) {
            await Promise.all([get('/healthz'), get('/readyz'), ...(t % 30 === 0 ? [get('/metrics')] : [])]);
            for (let w = 0; w < 100 && probing; w++) await sleep(100);
          }
        })(),
      );
    }
    // Past start-up: the first render, rotationAware's first look (within 2 s of
    // it) and V8's memory-reducing GCs after the start-up allocation (they come
    // ~8 s after start, a few in a row, then stop: ~0.05 CPU s once, which a
    // 45 s window would scale up to ~4 CPU s/hour that an hour does not have).
    await sleep(ctx.quick ? 500 : 20_000);
    const before = running.map((r) => (r.tally.reset(), { cpu: cpuSecondsFine(r.proc.pid), wake: wakeups(r.proc.pid), at: Date.now() }));
    await sleep(windowS * 1000);
    const rows = running.map((r, i): IdleRow => {
      const b = before[i] as { cpu: number; wake: number; at: number };
      const secs = (Date.now() - b.at) / 1000;
      const cpu = cpuSecondsFine(r.proc.pid) - b.cpu;
      return {
        label: r.v.label,
        command: commandOf(r.v, 'run'),
        interval: r.interval,
        windowS: round(secs, 1),
        cpuS: round(cpu, 2),
        cpuSPerHour: round((cpu / secs) * 3600, 1),
        wakeupsPerS: round((wakeups(r.proc.pid) - b.wake) / secs, 1),
        apiCalls: r.tally.snapshot(),
        rssMB: memory(r.proc.pid).rssMB,
      };
    });
    const rowOf = (label: string, interval: string): IdleRow =>
      rows.find((r) => r.label === label && r.interval === interval) as IdleRow;
    const checksPerHour = n * 12;
    const perCheck = (label: string): { idle: IdleRow; ms: number } => {
      const idle = rowOf(label, '5m (default)');
      const fast = rowOf(label, '1s');
      const checks = fast.apiCalls.DescribeSecret ?? 0;
      const ms = checks > 0 ? round((Math.max(0, fast.cpuS - (idle.cpuS * fast.windowS) / idle.windowS) * 1000) / checks, 2) : Number.NaN;
      return { idle, ms };
    };
    const b = perCheck(bundle.label);
    const img = perCheck(recommended.label);
    return {
      secrets: n,
      rows: cases.map((c) => rowOf(c.v.label, c.interval ?? '5m (default)')),
      checksPerHour,
      cpuMsPerCheck: b.ms,
      cpuSPerHourDefaultWithChecks: round(b.idle.cpuSPerHour + (checksPerHour * b.ms) / 1000, 1),
      recommended: recommended.label,
      cpuSPerHourImage: img.idle.cpuSPerHour,
      cpuMsPerCheckImage: img.ms,
      cpuSPerHourImageWithChecks: round(img.idle.cpuSPerHour + (checksPerHour * img.ms) / 1000, 1),
      notes: [`window ${windowS} s, from 20 s after start-up; at 5m no check falls in the window, so checks are added from the 1 s row's cost per check`],
    };
  } finally {
    probing = false;
    await Promise.all(probeLoops);
    await Promise.all(running.map(async (r) => (await r.proc.stop(), await r.proxy.close())));
  }
}
