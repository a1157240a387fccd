// Rounds and groups: how the scheduler (scheduler.ts) lets checks share requests.
//
// - Grouped checks (when the source can answer several in one request, see
//   SchedulerOptions.checkMany): the checks that fall due together, within the
//   group window of the earliest, are handed over as one group. Only the first
//   attempt is shared: a member whose part of the group failed transiently is
//   retried on its own, with `check`, so one bad secret never holds the others
//   back; backoff, terminal-error logs and rotation probes stay per secret.
// - Rounds (SchedulerOptions.batches says which specs share requests): a
//   per-secret jitter would make a pod's checks drift apart until they rarely
//   fall due together, so the secrets that batch and share an interval are
//   checked in rounds instead: one jittered draw per round, interval ± jitter
//   after the previous round, and every secret of the round is due at that
//   same time. Each pod draws its own, which is what spreads a fleet. A secret
//   that is not in the round (new or changed by a reload, back from retries,
//   after a rotation probe, after checkAllNow) joins the first round of its
//   interval that is no earlier than its own jitter allows
//   (start of its last check + interval × (1 − jitter), less the group
//   window): joining never adds a check, and the wait before it is at most
//   about two intervals, once. Rotation probes, retries and the rotationAware
//   first look stay per secret (a first look is shared by the secrets of one
//   setSecrets call). Specs that do not batch keep the per-secret jitter: with
//   nothing to share, it spreads one pod's calls over time instead of a burst.
//
// Rounds.roundFor is the rule for one batching secret: which round of its
// interval it is due in. memberAnswer is a group member's part of the group's
// answer: its outcome, or a SourceError that `check` retries it on alone.
import { SourceError } from '../errors.ts';
import type { SecretSpec } from '../types.ts';
import type { CheckOutcome } from './scheduler.ts';

/** The rounds of one interval: the last one run, the next, and the one after it once someone waits for it. */
interface IntervalRounds {
  prev?: number;
  next: number;
  after?: number;
}

/** What decides a batching secret's round. */
export interface RoundRequest {
  readonly interval: number;
  /** The round the secret was due in, when the check that just ended ran in one. */
  readonly member: number | undefined;
  /** When its last check attempt was issued (no later than now). */
  readonly start: number;
  readonly now: number;
  readonly jitter: number;
  /** The group window (checks this close together go as one group). */
  readonly windowMs: number;
  /** interval ± jitter: one draw per call. */
  readonly jittered: (ms: number) => number;
}

/** Batching secrets' rounds, by interval. */
export class Rounds {
  readonly #rounds = new Map<number, IntervalRounds>();

  /**
   * The round (its time) a batching secret whose check (attempt issued at
   * `start`) just ended, or that was just added, is in or joins: the header's
   * rule. Moves the rounds of its interval on as they pass.
   */
  roundFor({ interval, member, start, now, jitter, windowMs, jittered }: RoundRequest): number {
    let r = this.#rounds.get(interval);
    // A member of the round it ran in moves the rounds on (the first member to end draws the next one).
    if (r && member !== undefined && (member === r.next || member === r.after)) {
      r.next = member === r.next && r.after !== undefined ? r.after : member + jittered(interval);
      r.prev = member;
      delete r.after;
    }
    if (r && r.next <= now && r.after !== undefined && r.after > now) {
      r.prev = r.next;
      r.next = r.after;
      delete r.after;
    }
    if (!r || r.next <= now) {
      // No round ahead: this secret starts the next one. prev keeps the passed round known to its members still running.
      let next = start + jittered(interval);
      if (next <= now) next = now + jittered(interval);
      r = { ...(r ? { prev: r.next } : {}), next };
      this.#rounds.set(interval, r);
    }
    const earliest = start + interval * (1 - jitter) - windowMs;
    if (r.next < earliest) r.after ??= r.next + jittered(interval);
    return r.next >= earliest ? r.next : (r.after ?? r.next);
  }
}

/** One member's part of a group check's answer; rejects with the SourceError to retry it on (memberAnswer's contract above). */
export function memberAnswer(answers: Promise<Map<string, CheckOutcome | SourceError>>, spec: SecretSpec, stopped: () => boolean): Promise<CheckOutcome> {
  return answers.then(
    (m) => {
      const r = m.get(spec.name);
      if (r instanceof Error) throw r;
      if (r === undefined) throw groupError(spec, 'had no answer for it');
      return r;
    },
    (err: unknown) => {
      if (stopped() || err instanceof SourceError) throw err;
      throw groupError(spec, `failed (${(err as Error).message})`);
    },
  );
}

/** A member of a group check the group could not answer: transient, so it is retried on its own. */
function groupError(spec: SecretSpec, what: string): SourceError {
  return new SourceError({
    secret: spec.name,
    secretId: spec.id,
    code: 'GroupCheckFailed',
    transient: true,
    message: `the grouped check ${what}; retrying it on its own`,
  });
}
