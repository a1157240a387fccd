// Case 3: idle cost. CPU seconds of `run` with 10 secrets at the default
// interval (5m), measured over a window after start-up and scaled to an hour;
// beside it a 1 s interval (every secret checked every second), and the
// default interval with the event-loop monitor slowed to 1 s (ELD_1S), which
// tests whether that monitor is what keeps an idle agent busy.
// The agents run side by side, each behind its own recording proxy.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { agentVariants, commandOf, createSecrets, startRun, Tally, writeConfig, type BenchContext, type Variant } from './fixtures.ts';
import { cpuSeconds, memory, round, wakeups, type Proc } from './lib.ts';

/**
 * A preload (`node --import`) that measures a suspected hot spot without
 * touching the agent: prom-client's default metrics sample event-loop delay
 * with perf_hooks.monitorEventLoopDelay at a 10 ms resolution, a timer that
 * wakes an otherwise idle agent 100 times a second. This makes it 1 s, as
 * `collectDefaultMetrics({ eventLoopMonitoringPrecision: 1000 })` would.
 * A data: URL, so that nothing but this one module is loaded.
 */
export const ELD_1S =
  'data:text/javascript,' +
  encodeURIComponent(
    "import p from 'node:perf_hooks'; const m = p.monitorEventLoopDelay; p.monitorEventLoopDelay = (o) => m({ ...o, resolution: Math.max(o?.resolution ?? 10, 1000) });",
  );

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
  /** CPU ms per check of one secret (DescribeSecret, unchanged), from the 1 s row minus the idle floor. */
  cpuMsPerCheck: number;
  /** The default interval's CPU s per hour with its 120 checks per hour added (10 secrets, 5m). */
  cpuSPerHourDefaultWithChecks: number;
  notes: string[];
}

export async function idleCase(ctx: BenchContext): Promise<IdleResult> {
  const n = 10;
  const windowS = ctx.quick ? 1 : 45;
  const secrets = await createSecrets(ctx.moto, Array.from({ length: n }, (_, i) => `bench/idle/s${String(i).padStart(2, '0')}`));
  const { bundle } = agentVariants(ctx);
  const cases: { v: Variant; interval: string | undefined }[] = [
    { v: bundle, interval: undefined },
    { v: bundle, interval: '1s' },
    { v: { ...bundle, label: `${bundle.label}, event-loop monitor at 1 s`, flags: ['--import', ELD_1S] }, interval: undefined },
  ];
  const running: { v: Variant; interval: string; proc: Proc; proxy: Proxy; tally: Tally }[] = [];
  try {
    await Promise.all(
      cases.map(async ({ v, interval }, i) => {
        const proxy = await startProxy(ctx.moto.url);
        const dir = join(ctx.root, `idle-${i}`);
        const config = await writeConfig(dir, {
          outputDir: join(dir, 'out'),
          ...(interval ? { interval } : {}),
          secrets: secrets.map((s) => ({ name: s.id.split('/').pop() as string, id: s.id })),
          files: secrets.map((s) => `  - { path: ${s.id.split('/').pop()}, secret: ${s.id.split('/').pop()} }`),
        });
        const { proc } = await startRun(ctx, v, config, proxy.url);
        running.push({ v, interval: interval ?? '5m (default)', proc, proxy, tally: new Tally(proxy) });
      }),
    );
    // Past start-up and rotationAware's first look (within 2 s of the first render).
    await sleep(ctx.quick ? 500 : 3000);
    const before = running.map((r) => (r.tally.reset(), { cpu: cpuSeconds(r.proc.pid), wake: wakeups(r.proc.pid), at: Date.now() }));
    await sleep(windowS * 1000);
    const rows = running.map((r, i): IdleRow => {
      const b = before[i] as { cpu: number; wake: number; at: number };
      const secs = (Date.now() - b.at) / 1000;
      const cpu = cpuSeconds(r.proc.pid) - b.cpu;
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
    const idle = rowOf(bundle.label, '5m (default)');
    const fast = rowOf(bundle.label, '1s');
    const checks = fast.apiCalls.DescribeSecret ?? 0;
    const cpuMsPerCheck = checks > 0 ? round((Math.max(0, fast.cpuS - (idle.cpuS * fast.windowS) / idle.windowS) * 1000) / checks, 2) : Number.NaN;
    const checksPerHour = n * 12;
    return {
      secrets: n,
      rows: cases.map((c) => rowOf(c.v.label, c.interval ?? '5m (default)')),
      cpuMsPerCheck,
      cpuSPerHourDefaultWithChecks: round(idle.cpuSPerHour + (checksPerHour * cpuMsPerCheck) / 1000, 1),
      notes: [`window ${windowS} s after start-up + 3 s; at 5m no check falls in the window, so checks are added from the 1 s row's cost per check`],
    };
  } finally {
    await Promise.all(running.map(async (r) => (await r.proc.stop(), await r.proxy.close())));
  }
}
