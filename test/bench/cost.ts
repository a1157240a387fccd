// Case 5 (arithmetic part): AWS calls and dollars per secret per day, from the
// calls measured per check (scale), per rotation and the propagation latency
// (rotation), against naive per-secret GetSecretValue polling. And batched
// checks (refresh.batchChecks): calls per secret per day with and without
// them at 10 and 100 secrets per pod, from the scheduler's grouping rule
// (simulated over a day; test/e2e/batch-checks.test.ts measures the rule's
// outcome at a proxy: 10 secrets due together, one ListSecrets per round).
import type { InitResult } from './init.ts';
import type { RotationResult } from './rotation.ts';
import type { ScaleResult } from './scale.ts';
import { round } from './lib.ts';

/** $0.05 per 10,000 API calls ("AWS Secrets Manager Pricing", docs/aws.md). */
export const DOLLARS_PER_CALL = 0.05 / 10_000;
export const PODS = 1000;
export const SECRETS_PER_POD = 10;
const DEFAULT_INTERVAL_S = 300;
/** Rotations per secret per day assumed for the totals: a 30-day schedule. */
const ROTATIONS_PER_DAY = 1 / 30;

export interface CostRow {
  strategy: string;
  /** How late a scheduled rotation reaches the app (p99), seconds. */
  rotationLagP99S: number;
  callsPerSecretPerDay: number;
  calls: string;
  dollarsPerMonth: number;
}

export interface CostResult {
  /** Measured: API calls per check of one unchanged secret, by operation. */
  callsPerCheck: Record<string, number>;
  getSecretValuePerRotation: Record<string, number>;
  rows: CostRow[];
  /** API calls per pod start (init), by variant. */
  podStart: Record<string, Record<string, number>>;
  /** refresh.batchChecks: check calls per secret per day, with and without, by secrets per pod and jitter. */
  batching: BatchingRow[];
  notes: string[];
}

export interface BatchingRow {
  secretsPerPod: number;
  jitter: number;
  /** One DescribeSecret per check. */
  withoutPerSecretPerDay: number;
  /** ListSecrets per group of checks due together (10 names a call), DescribeSecret for a check due alone. */
  withPerSecretPerDay: number;
  /** Mean number of checks sharing one round. */
  meanGroup: number;
  dollarsPerMonthWithout: number;
  dollarsPerMonthWith: number;
}

/** ListSecrets: 10 names per `name` filter (docs/aws.md). */
const LIST_FILTER_VALUES = 10;

/**
 * One simulated day of the scheduler's rule (refresh/scheduler.ts): every
 * secret next due one jittered interval after its check; when the earliest is
 * due, every check due within the window of it goes along (a group);
 * rotationAware off, checks take no time. Returns check calls per secret per day.
 */
export function simulateBatching(secrets: number, jitter: number, intervalS = DEFAULT_INTERVAL_S, seed = 1): { withCalls: number; withoutCalls: number; meanGroup: number } {
  let x = seed;
  const random = (): number => ((x = (x * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const jittered = (): number => Math.max(0.001, intervalS * (1 - jitter + random() * 2 * jitter));
  const windowS = Math.min(0.5, intervalS / 4);
  const due = Array.from({ length: secrets }, jittered);
  let withCalls = 0;
  let checks = 0;
  let rounds = 0;
  for (;;) {
    const t = Math.min(...due);
    if (t > 86_400) break;
    const group = due.flatMap((d, i) => (d <= t + windowS ? [i] : []));
    withCalls += group.length > 1 ? Math.ceil(group.length / LIST_FILTER_VALUES) : 1;
    checks += group.length;
    rounds++;
    for (const i of group) due[i] = t + jittered();
  }
  return { withCalls: withCalls / secrets, withoutCalls: checks / secrets, meanGroup: checks / rounds };
}

const dollars = (perSecretPerDay: number): number => round(perSecretPerDay * SECRETS_PER_POD * PODS * 30 * DOLLARS_PER_CALL, 2);

export function costCase(init: InitResult | undefined, scale: ScaleResult | undefined, rotation: RotationResult | undefined): CostResult {
  const largest = scale?.rows.at(-1);
  const callsPerCheck: Record<string, number> = {};
  if (largest) for (const [op, c] of Object.entries(largest.cycleCalls)) callsPerCheck[op] = round(c / largest.secrets, 3);
  const perCheck = Object.values(callsPerCheck).reduce((a, b) => a + b, 0) || Number.NaN;
  const aware = rotation?.rows.find((r) => r.mode.startsWith('rotationAware'));
  const base = rotation?.rows.find((r) => !r.mode.startsWith('rotationAware'));
  const awareP99S = aware ? aware.notifyP99Ms / 1000 : Number.NaN;
  // Per rotation with rotationAware: the probe(s) after NextRotationDate + the GetSecretValue.
  const awareExtra = aware ? (aware.describeCalls / aware.rotations - 1 + aware.getSecretValuePerRotation) * ROTATIONS_PER_DAY : Number.NaN;
  const checksPerDay = 86_400 / DEFAULT_INTERVAL_S;
  const agentDay = checksPerDay * perCheck + (base ? base.getSecretValuePerRotation * ROTATIONS_PER_DAY : Number.NaN);
  const rows: CostRow[] = [
    {
      strategy: 'secrets-agent defaults (5m, rotationAware)',
      rotationLagP99S: round(awareP99S, 1),
      callsPerSecretPerDay: round(checksPerDay * perCheck + awareExtra, 2),
      calls: 'DescribeSecret; GetSecretValue once per rotation',
      dollarsPerMonth: dollars(checksPerDay * perCheck + awareExtra),
    },
    {
      strategy: 'secrets-agent, rotationAware off (5m)',
      rotationLagP99S: DEFAULT_INTERVAL_S * 1.2,
      callsPerSecretPerDay: round(agentDay, 2),
      calls: 'DescribeSecret; GetSecretValue once per rotation',
      dollarsPerMonth: dollars(agentDay),
    },
    {
      strategy: 'naive GetSecretValue polling every 5m',
      rotationLagP99S: DEFAULT_INTERVAL_S,
      callsPerSecretPerDay: checksPerDay,
      calls: 'GetSecretValue (a KMS decrypt each with a customer key)',
      dollarsPerMonth: dollars(checksPerDay),
    },
    {
      strategy: `naive GetSecretValue polling every ${round(awareP99S, 1)} s (the agent's rotation lag)`,
      rotationLagP99S: round(awareP99S, 1),
      callsPerSecretPerDay: round(86_400 / awareP99S),
      calls: 'GetSecretValue (a KMS decrypt each with a customer key)',
      dollarsPerMonth: dollars(86_400 / awareP99S),
    },
  ];
  const podStart: Record<string, Record<string, number>> = {};
  for (const r of init?.rows ?? []) podStart[r.name] = r.apiCalls;
  const perPodMonth = (perSecretPerDay: number, n: number): number => round(perSecretPerDay * n * PODS * 30 * DOLLARS_PER_CALL, 2);
  const batching: BatchingRow[] = [];
  for (const n of [10, 100]) {
    for (const jitter of [0, 0.2]) {
      const sim = simulateBatching(n, jitter);
      batching.push({
        secretsPerPod: n,
        jitter,
        withoutPerSecretPerDay: round(sim.withoutCalls, 1),
        withPerSecretPerDay: round(sim.withCalls, 1),
        meanGroup: round(sim.meanGroup, 2),
        dollarsPerMonthWithout: perPodMonth(sim.withoutCalls, n),
        dollarsPerMonthWith: perPodMonth(sim.withCalls, n),
      });
    }
  }
  return {
    callsPerCheck,
    getSecretValuePerRotation: Object.fromEntries((rotation?.rows ?? []).map((r) => [r.mode, r.getSecretValuePerRotation])),
    rows,
    podStart,
    batching,
    notes: [
      `$0.05 per 10,000 calls; ${PODS} pods x ${SECRETS_PER_POD} secrets x 30 days; one rotation per secret per 30 days.`,
      'Calls per check measured at the proxy over a full cycle of the largest scale run; a naive poller fetches the value on every poll.',
      `Batched checks: one simulated day of the scheduler's grouping rule at the ${DEFAULT_INTERVAL_S / 60}m default (window min(500 ms, interval / 4), rotationAware off, GetSecretValue on rotation not counted); dollars for ${PODS} pods with that many secrets each. With jitter the checks of a pod drift apart and rarely share a request.`,
    ],
  };
}
