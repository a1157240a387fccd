// Case 4: scale. 10, 100 and 1,000 secrets, one file each (every other one a
// template): the first render (process start -> "first render complete"),
// one full check cycle (every secret checked once; the second cycle, so JIT
// warm-up is not counted), the API calls of each, peak RSS. The per-secret
// columns must stay flat as the size grows: nothing may be quadratic.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy } from '../support/proxy.ts';
import { agentVariants, DescribeStandIn, startRun, Tally, writeConfig, type BenchContext, type Created } from './fixtures.ts';
import { cpuSeconds, cpuSecondsFine, memory, round, until } from './lib.ts';

export interface ScaleRow {
  secrets: number;
  files: number;
  /** Process start -> first render complete (all fetched, rendered, written). */
  firstRenderMs: number;
  firstRenderMsPerSecret: number;
  /** Agent CPU from process start to the first render complete. */
  firstRenderCpuMs: number;
  firstRenderCpuMsPerSecret: number;
  /** API calls of the first render, by operation. */
  firstRenderCalls: Record<string, number>;
  /** Wall time of one full check cycle (first to last DescribeSecret of the cycle). */
  cycleMs: number;
  /** Agent CPU during that cycle. */
  cycleCpuMs: number;
  cpuMsPerCheck: number;
  /** API calls of that cycle, by operation. */
  cycleCalls: Record<string, number>;
  rssMB: number;
  hwmMB: number;
}

export interface ScaleResult {
  label: string;
  rows: ScaleRow[];
  notes: string[];
}


export async function scaleCase(ctx: BenchContext): Promise<ScaleResult> {
  const many = await ctx.many();
  const sizes = ctx.quick ? [2, many.length] : [10, 100, 1000];
  const intervalMs = ctx.quick ? 500 : 3000;
  const standIn = await DescribeStandIn.capture(ctx.moto, many[0] as Created);
  const variant = agentVariants(ctx).bundle;
  const rows: ScaleRow[] = [];
  for (const n of sizes) {
    const secrets = many.slice(0, n);
    for (const s of secrets) standIn.set(s);
    const proxy = await startProxy(ctx.moto.url);
    standIn.attach(proxy);
    const tally = new Tally(proxy);
    const dir = join(ctx.root, `scale-${n}`);
    const name = (s: Created): string => s.id.split('/').pop() as string;
    const config = await writeConfig(dir, {
      outputDir: join(dir, 'out'),
      interval: `${intervalMs}ms`,
      jitter: 0,
      rotationAware: false,
      secrets: secrets.map((s) => ({ name: name(s), id: s.id })),
      files: secrets.map((s, i) =>
        i % 2 === 0
          ? `  - path: conf/${name(s)}.env\n    template: "DB_USER={{ secrets.${name(s)}.username }}\\nDB_PASSWORD={{ secrets.${name(s)}.password | dotenv }}\\n"`
          : `  - { path: ${name(s)}.json, secret: ${name(s)} }`,
      ),
    });
    const { proc, readyAt } = await startRun(ctx, variant, config, proxy.url, 300_000);
    const firstRenderCpuMs = round(cpuSeconds(proc.pid) * 1000);
    try {
      const firstRenderCalls = tally.snapshot();
      // Cycle 1 starts intervalMs after the first render; measure cycle 2
      // (checks n+1 .. 2n: each secret's second check).
      const log: { operation: string; at: number }[] = (tally.log = []);
      const wait = intervalMs * 3 + 60_000;
      await until('the first check cycle', () => tally.get('DescribeSecret') >= n, wait, 20);
      await until('the second check cycle to start', () => tally.get('DescribeSecret') > n, wait, 2);
      const cpu0 = cpuSecondsFine(proc.pid);
      await until('the second check cycle', () => tally.get('DescribeSecret') >= 2 * n, wait, 2);
      await sleep(10); // the last answer's handling
      const cpu = cpuSecondsFine(proc.pid) - cpu0;
      // The requests from the (n+1)-th DescribeSecret to the 2n-th, in arrival order.
      const checks = log.flatMap((r, i) => (r.operation === 'DescribeSecret' ? [i] : []));
      const first = checks[n] as number;
      const last = checks[2 * n - 1] as number;
      const start = (log[first] as { at: number }).at;
      const end = (log[last] as { at: number }).at;
      const cycleCalls: Record<string, number> = {};
      for (const r of log.slice(first, last + 1)) cycleCalls[r.operation] = (cycleCalls[r.operation] ?? 0) + 1;
      const mem = memory(proc.pid);
      const firstRenderMs = readyAt - proc.startedAt;
      rows.push({
        secrets: n,
        files: n,
        firstRenderMs,
        firstRenderMsPerSecret: round(firstRenderMs / n, 2),
        firstRenderCpuMs,
        firstRenderCpuMsPerSecret: round(firstRenderCpuMs / n, 2),
        firstRenderCalls,
        cycleMs: end - start,
        cycleCpuMs: round(cpu * 1000, 1),
        cpuMsPerCheck: round((cpu * 1000) / n, 3),
        cycleCalls,
        rssMB: mem.rssMB,
        hwmMB: mem.hwmMB,
      });
    } finally {
      await proc.stop();
      await proxy.close();
    }
  }
  return {
    label: variant.label,
    rows,
    notes: [
      `interval ${intervalMs / 1000} s, jitter 0, rotationAware off: every secret is due at once, 8 checks in flight (the scheduler's limit).`,
      'DescribeSecret answered by the stand-in at the proxy (see memory); the first render (STS + BatchGetSecretValue) goes to moto.',
    ],
  };
}
