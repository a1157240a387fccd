// Case 5 (arithmetic part): AWS calls and dollars per secret per day, from the
// calls measured per check (scale), per rotation and the propagation latency
// (rotation), against naive per-secret GetSecretValue polling. And batched
// checks (refresh.batchChecks, SSM): calls per secret per day with and
// without them at 10 and 100 secrets per pod at the defaults (5m, jitter 0.2),
// from the scheduler's rule simulated over a day: rounds (one jittered draw
// per round for the secrets that batch, refresh/scheduler.ts) and, for
// comparison, the per-secret jitter batching had before rounds
// (test/unit/refresh/scheduler.test.ts checks the rule on a fake clock,
// test/e2e/check-rounds.test.ts its outcome at a proxy).
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
  /** 'rounds': the scheduler's rule; 'per-secret jitter': each secret drawn on its own (before rounds). */
  schedule: 'rounds' | 'per-secret jitter';
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
 * One simulated day of the scheduler (refresh/scheduler.ts): when the earliest
 * check is due, every check due within the window of it goes along (a group).
 * `rounds`: every member of a group is next due at the same time, one jittered
 * interval later (one draw per round, the rule for secrets that batch);
 * otherwise every secret draws its own jittered interval. rotationAware off,
 * checks take no time. Returns check calls per secret per day.
 */
export function simulateBatching(secrets: number, jitter: number, intervalS = DEFAULT_INTERVAL_S, seed = 1, inRounds = true): { withCalls: number; withoutCalls: number; meanGroup: number } {
  let x = seed;
  const random = (): number => ((x = (x * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const jittered = (): number => Math.max(0.001, intervalS * (1 - jitter + random() * 2 * jitter));
  const windowS = Math.min(0.5, intervalS / 4);
  const first = jittered();
  const due = Array.from({ length: secrets }, () => (inRounds ? first : jittered()));
  let withCalls = 0;
  let checks = 0;
  let groups = 0;
  for (;;) {
    const t = Math.min(...due);
    if (t > 86_400) break;
    const group = due.flatMap((d, i) => (d <= t + windowS ? [i] : []));
    withCalls += group.length > 1 ? Math.ceil(group.length / LIST_FILTER_VALUES) : 1;
    checks += group.length;
    groups++;
    const next = t + jittered();
    for (const i of group) due[i] = inRounds ? next : t + jittered();
  }
  return { withCalls: withCalls / secrets, withoutCalls: checks / secrets, meanGroup: checks / groups };
}

const dollars = (perSecretPerDay: number): number => round(perSecretPerDay * SECRETS_PER_POD * PODS * 30 * DOLLARS_PER_CALL, 2);

export function costCase(init: InitResult | undefined, scale: ScaleResult | undefined, rotation: RotationResult | undefined): CostResult {
  // The default check (DescribeSecret), bare bundle: the growth rows' largest.
  const largest = scale?.rows.filter((r) => r.checks === 'DescribeSecret' && r.variant === scale.label).at(-1);
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
    for (const rounds of [true, false]) {
      const jitter = 0.2; // the default
      const sim = simulateBatching(n, jitter, DEFAULT_INTERVAL_S, 1, rounds);
      batching.push({
        secretsPerPod: n,
        jitter,
        schedule: rounds ? 'rounds' : 'per-secret jitter',
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
      `Batched checks: one simulated day of the scheduler at the defaults (${DEFAULT_INTERVAL_S / 60}m, jitter 0.2, window min(500 ms, interval / 4); rotationAware off, GetSecretValue on rotation not counted); "without": one DescribeSecret per check; "with": ListSecrets (or GetParameters) per 10 checks of a group, DescribeSecret for a check due alone; dollars for ${PODS} pods with that many secrets each. "rounds" is the scheduler's rule (one jittered draw per round for the secrets that batch); "per-secret jitter" is batching before rounds, where a pod's checks drift apart and rarely share a request.`,
    ],
  };
}
