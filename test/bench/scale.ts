// Case 4: scale. 10, 100 and 1,000 secrets, one file each (every other one a
// template): the first render (process start -> "first render complete"),
// one full check cycle (every secret checked once; the second cycle, so JIT
// warm-up is not counted), the API calls of each, peak RSS. The per-secret
// columns must stay flat as the size grows: nothing may be quadratic.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FOLDER_MIN_SECRETS, LIST_FILTER_VALUES } from '../../agent/source/aws.ts';
import { startProxy } from '../support/proxy.ts';
import { agentVariants, DescribeStandIn, startRun, Tally, writeConfig, type BenchContext, type Created, type Variant } from './fixtures.ts';
import { cpuSeconds, cpuSecondsFine, memory, round, until } from './lib.ts';

export interface ScaleRow {
  /** The agent as run (bundle, or as the image runs it). */
  variant: string;
  /** How a check asks: one DescribeSecret per secret (the default) or ListSecrets for 10 (refresh.batchChecks). */
  checks: 'DescribeSecret' | 'ListSecrets';
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
  /** Wall time of the median check cycle (first to last check request of the cycle). */
  cycleMs: number;
  /** Agent CPU during that cycle (the median of the cycles measured). */
  cycleCpuMs: number;
  /** Agent CPU of each cycle measured. */
  cycleCpuMsAll: number[];
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
  const variants = agentVariants(ctx);
  const rows: ScaleRow[] = [];
  // The growth rows (the default check, one DescribeSecret a secret), then the largest size
  // with refresh.batchChecks, bare and as the image runs it (--lite-mode costs CPU per check).
  const runs: { n: number; variant: Variant; batch: boolean }[] = [
    ...sizes.map((n) => ({ n, variant: variants.bundle, batch: false })),
    { n: many.length, variant: variants.bundle, batch: true },
    ...(ctx.quick
      ? []
      : [
          { n: many.length, variant: variants.recommended, batch: false },
          { n: many.length, variant: variants.recommended, batch: true },
        ]),
  ];
  for (const { n, variant, batch } of runs) {
    rows.push(await measure(ctx, standIn, many.slice(0, n), variant, batch, intervalMs));
  }
  return {
    label: variants.bundle.label,
    rows,
    notes: [
      `the median of ${CYCLES} check cycles (each secret's 2nd to ${CYCLES + 1}th check; all in "cycle CPU ms, each"); interval ${intervalMs / 1000} s, jitter 0, rotationAware off: every secret is due at once, 8 checks in flight (the scheduler's limit); with batchChecks one round: the 1,000 names share the path bench/many/, which the agent lists whole, 100 entries a call (10 names a call below 20 names under a path).`,
      'DescribeSecret and ListSecrets answered by the stand-in at the proxy (see memory); the first render (STS + BatchGetSecretValue) goes to moto.',
    ],
  };
}

async function measure(ctx: BenchContext, standIn: DescribeStandIn, secrets: readonly Created[], variant: Variant, batch: boolean, intervalMs: number): Promise<ScaleRow> {
  const n = secrets.length;
  for (const s of secrets) standIn.set(s);
  const proxy = await startProxy(ctx.moto.url);
  standIn.attach(proxy);
  const tally = new Tally(proxy);
  const dir = join(ctx.root, `scale-${n}-${rowsMade++}`);
  const name = (s: Created): string => s.id.split('/').pop() as string;
  const config = await writeConfig(dir, {
    outputDir: join(dir, 'out'),
    interval: `${intervalMs}ms`,
    jitter: 0,
    rotationAware: false,
    ...(batch ? { batchChecks: true } : {}),
    secrets: secrets.map((s) => ({ name: name(s), id: s.id })),
    files: secrets.map((s, i) =>
      i % 2 === 0
        ? `  - path: conf/${name(s)}.env\n    template: "DB_USER={{ secrets.${name(s)}.username }}\\nDB_PASSWORD={{ secrets.${name(s)}.password | dotenv }}\\n"`
        : `  - { path: ${name(s)}.json, secret: ${name(s)} }`,
    ),
  });
  // One cycle: a DescribeSecret per secret, or the ListSecrets of batchedCalls().
  const op = batch ? 'ListSecrets' : 'DescribeSecret';
  const perCycle = batch ? batchedCalls(n) : n;
  const { proc, readyAt } = await startRun(ctx, variant, config, proxy.url, 300_000);
  const firstRenderCpuMs = round(cpuSeconds(proc.pid) * 1000);
  try {
    const firstRenderCalls = tally.snapshot();
    // Cycle 1 starts intervalMs after the first render; measure cycles 2 to
    // 1 + CYCLES (each secret's 2nd, 3rd, ... check) and keep the median
    // cycle: one cycle's CPU moves with the garbage collector's phase (a
    // full GC lands in some cycles and not in others).
    const log: { operation: string; at: number }[] = (tally.log = []);
    const wait = intervalMs * 3 + 60_000;
    await until('the first check cycle', () => tally.get(op) >= perCycle, wait, 20);
    const cycles: { cpuMs: number; ms: number; calls: Record<string, number> }[] = [];
    for (let c = 1; c <= CYCLES; c++) {
      await until(`check cycle ${c + 1} to start`, () => tally.get(op) > c * perCycle, wait, 2);
      const cpu0 = cpuSecondsFine(proc.pid);
      await until(`check cycle ${c + 1}`, () => tally.get(op) >= (c + 1) * perCycle, wait, 2);
      await sleep(10); // the last answer's handling
      const cpuMs = (cpuSecondsFine(proc.pid) - cpu0) * 1000;
      // The requests from the first check request of the cycle to its last, in arrival order.
      const checks = log.flatMap((r, i) => (r.operation === op ? [i] : []));
      const first = checks[c * perCycle] as number;
      const last = checks[(c + 1) * perCycle - 1] as number;
      const calls: Record<string, number> = {};
      for (const r of log.slice(first, last + 1)) calls[r.operation] = (calls[r.operation] ?? 0) + 1;
      cycles.push({ cpuMs, ms: (log[last] as { at: number }).at - (log[first] as { at: number }).at, calls });
    }
    const mid = [...cycles].sort((a, b) => a.cpuMs - b.cpuMs)[Math.floor(cycles.length / 2)] as (typeof cycles)[number];
    const mem = memory(proc.pid);
    const firstRenderMs = readyAt - proc.startedAt;
    return {
      variant: variant.label,
      checks: op,
      secrets: n,
      files: n,
      firstRenderMs,
      firstRenderMsPerSecret: round(firstRenderMs / n, 2),
      firstRenderCpuMs,
      firstRenderCpuMsPerSecret: round(firstRenderCpuMs / n, 2),
      firstRenderCalls,
      cycleMs: mid.ms,
      cycleCpuMs: round(mid.cpuMs, 1),
      cpuMsPerCheck: round(mid.cpuMs / n, 3),
      cycleCpuMsAll: cycles.map((c) => round(c.cpuMs, 1)),
      cycleCalls: mid.calls,
      rssMB: mem.rssMB,
      hwmMB: mem.hwmMB,
    };
  } finally {
    await proc.stop();
    await proxy.close();
  }
}

let rowsMade = 0;

/**
 * ListSecrets calls of one batched round of n secrets named bench/many/sNNNN
 * (one path): from FOLDER_MIN_SECRETS names under one path the agent lists the
 * path, 100 entries a page; below that, LIST_FILTER_VALUES names a call.
 */
export function batchedCalls(n: number): number {
  return n >= FOLDER_MIN_SECRETS ? Math.ceil(n / 100) : Math.ceil(n / LIST_FILTER_VALUES);
}
/** Check cycles measured per row (after the first): the median is reported. */
const CYCLES = 3;
