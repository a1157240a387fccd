// The refresh scheduler: when each secret is checked next.
//
// - Every secret has its own schedule: interval ± jitter (per-secret override),
//   except where checks share requests (rounds, below).
// - A check that fails transiently is retried with p-retry: exponential backoff
//   with jitter, starting no faster than the SDK's own retries (which already
//   made 3 attempts) and never slower than the interval, so the agent recovers
//   within one interval after an outage ends.
// - A terminal failure (AccessDenied, ResourceNotFound, DecryptionFailure) is
//   logged once per distinct error and retried at the normal interval.
// - rotationAware: when a check shows rotation enabled with a NextRotationDate
//   before the next regular check, extra checks are scheduled just after that
//   date (at +1 s, +2 s, +4 s … , at most ROTATION_PROBES of them) until the new
//   version appears, so a scheduled rotation reaches the pod within seconds
//   even with a 1 h interval.
// - Pinned versionIds are never scheduled: their value cannot change; nor are
//   secrets with refreshInterval: never (fetched once).
// - Grouped checks and rounds, when the source can answer several checks in
//   one request (SchedulerOptions.checkMany, .batches): rounds.ts, whose
//   header states the rules. Backoff, terminal-error logs and rotation probes
//   stay per secret.
// - Time: every wait is measured on the monotonic clock (performance.now()),
//   so a wall-clock step (NTP, a VM resumed) neither stops the checks (a step
//   back) nor makes them all due at once (a step forward). Wall time is used
//   only to place a NextRotationDate (a wall-clock date) relative to now.
// At most `concurrency` checks (a group counts as one) run at once (p-limit).
// All timers are unref'd; stop() aborts checks in flight and drops the queued
// ones, and a check aborted that way counts as neither success nor error.
import pLimit, { type LimitFunction } from 'p-limit';
import pRetry from 'p-retry';
import type { SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import { RepeatLimiter } from '../observe/repeats.ts';
import { sameSource, type SecretMetadata, type SecretSpec } from '../types.ts';
import { DueHeap } from './heap.ts';
import { memberAnswer, Rounds } from './rounds.ts';

export interface CheckOutcome {
  readonly metadata: SecretMetadata;
  /** The version carrying the stage moved and the new value was fetched. */
  readonly changed: boolean;
}

export interface RefreshSettings {
  readonly intervalMs: number;
  readonly jitter: number;
  readonly rotationAware: boolean;
}

export interface SchedulerOptions extends RefreshSettings {
  readonly log: Logger;
  /** One check of one secret: DescribeSecret, and GetSecretValue only if the version moved. Throws SourceError. */
  readonly check: (spec: SecretSpec, signal: AbortSignal) => Promise<CheckOutcome>;
  /**
   * Several checks sharing requests: local name -> outcome or SourceError, one
   * entry per spec. Must not reject for one secret's failure. Used only while
   * groupWindowMs() gives a window.
   */
  readonly checkMany?: (specs: readonly SecretSpec[], signal: AbortSignal) => Promise<Map<string, CheckOutcome | SourceError>>;
  /**
   * Checks due within this many ms of the earliest due one go together to
   * checkMany; undefined: no grouping, one `check` each. Asked at every tick
   * (the source or the window may change with a config reload).
   */
  readonly groupWindowMs?: () => number | undefined;
  /**
   * Does this spec's check share a request with others (a batching backend)?
   * Such specs are checked in rounds per interval (rounds.ts); others keep
   * their own jittered schedule. Asked whenever a spec is scheduled; only
   * while checkMany and a group window are there. @default none batch
   */
  readonly batches?: (spec: SecretSpec) => boolean;
  /** Called after every check attempt (for metrics). */
  readonly onCheckResult?: (spec: SecretSpec, error: SourceError | undefined) => void;
  /** Max checks in flight at once. @default 8 */
  readonly concurrency?: number;
  /** Monotonic clock (ms) every due time is on, for tests. @default performance.now */
  readonly now?: () => number;
  /** Wall clock (ms since the epoch), only to place a NextRotationDate, for tests. @default Date.now */
  readonly wall?: () => number;
}

/** Extra checks after a NextRotationDate: 1+2+4+…+128 s ≈ 4 min of rotation Lambda time covered. */
export const ROTATION_PROBES = 8;
/**
 * rotationAware: the first metadata check after start comes within this long.
 * One DescribeSecret per secret per start is cheap (40,000 TPS, no KMS decrypt).
 */
export const FIRST_LOOK_MS = 2_000;
/** A NextRotationDate this recent is still watched (the rotation may be under way). */
export const ROTATION_GRACE_MS = 5 * 60_000;

interface SecretState {
  spec: SecretSpec;
  /** Bumped on every reschedule: heap entries with an older token are stale. */
  token: number;
  /** Key of the last terminal error logged (code + message), to log each distinct error once. */
  lastTerminal?: string;
  /** A scheduled rotation being watched: its date, and probes done since. */
  rotation?: { at: number; probes: number };
  running: boolean;
  /** When this secret is next checked. */
  nextDue?: number;
  /** The round (its time) this secret is due in; undefined when due on its own. */
  round?: number;
  /** When its last check attempt was issued (a round's earliest next time counts from it). */
  attemptAt?: number;
}


export class Scheduler {
  readonly #o: SchedulerOptions;
  #refresh: RefreshSettings;
  readonly #now: () => number;
  readonly #wall: () => number;
  readonly #states = new Map<string, SecretState>();
  readonly #heap = new DueHeap<{ name: string; token: number }>();
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #timerDue = Infinity;
  readonly #limit: LimitFunction;
  #stopped = false;
  readonly #running = new Set<Promise<void>>();
  /** Batching secrets' rounds, by interval. */
  readonly #rounds = new Rounds();
  /** Transient check failures: one line per cause, not per secret per retry. */
  readonly #repeats: RepeatLimiter;

  constructor(options: SchedulerOptions) {
    this.#o = options;
    this.#repeats = new RepeatLimiter(options.log);
    this.#refresh = { intervalMs: options.intervalMs, jitter: options.jitter, rotationAware: options.rotationAware };
    this.#now = options.now ?? (() => performance.now());
    this.#wall = options.wall ?? Date.now;
    this.#limit = pLimit({ concurrency: options.concurrency ?? 8, rejectOnClear: true });
  }

  /** New refresh settings (config reload); secrets whose interval changed are rescheduled by setSecrets(). */
  setRefresh(refresh: RefreshSettings): void {
    const before = this.#refresh.intervalMs;
    this.#refresh = { intervalMs: refresh.intervalMs, jitter: refresh.jitter, rotationAware: refresh.rotationAware };
    if (before !== refresh.intervalMs) {
      const now = this.#now();
      for (const s of this.#states.values()) {
        if (s.spec.refreshIntervalMs) continue;
        delete s.round;
        s.attemptAt = now;
        this.#schedule(s, this.#regularDue(s, now), s.round);
      }
      this.#arm();
    }
  }

  /** Interval of one secret (its own override, else the global one). */
  intervalOf(spec: SecretSpec): number {
    return spec.refreshIntervalMs ?? this.#refresh.intervalMs;
  }

  #jittered(ms: number): number {
    const j = this.#refresh.jitter;
    return Math.max(1, ms * (1 - j + Math.random() * 2 * j));
  }

  /**
   * Replace the set of secrets (start-up and config reload). Secrets that stay
   * keep their schedule; new ones are first checked one jittered interval from now.
   */
  setSecrets(specs: readonly SecretSpec[]): void {
    const keep = new Set<string>();
    // rotationAware: the first look of the batching secrets added now, one draw for all of them.
    const firstLook = Math.random() * FIRST_LOOK_MS;
    for (const spec of specs) {
      if (spec.versionId || spec.fetchOnce) continue; // pinned, or refreshInterval: never: never re-checked
      keep.add(spec.name);
      const old = this.#states.get(spec.name);
      if (old && sameSource(old.spec, spec) && this.intervalOf(old.spec) === this.intervalOf(spec)) {
        old.spec = spec;
        continue;
      }
      const state: SecretState = old ?? { spec, token: 0, running: false };
      state.spec = spec;
      delete state.rotation;
      delete state.lastTerminal;
      delete state.round;
      this.#states.set(spec.name, state);
      this.#scheduleFirst(state, firstLook);
    }
    for (const name of [...this.#states.keys()]) {
      if (!keep.has(name)) {
        const s = this.#states.get(name);
        if (s) s.token++; // invalidates its heap entries
        this.#states.delete(name);
      }
    }
    this.#arm();
  }

  /**
   * The first check of a new secret. Its value was just fetched, so normally one
   * interval away (for a batching secret: the round it joins); but with
   * rotationAware and a long interval the agent would not learn a
   * NextRotationDate before it passes, so one early metadata check (spread over
   * up to FIRST_LOOK_MS, no value fetched; shared by the batching secrets added
   * together) learns it.
   */
  #scheduleFirst(state: SecretState, firstLook: number): void {
    const now = this.#now();
    state.attemptAt = now;
    const regular = this.#regularDue(state, now);
    if (!this.#refresh.rotationAware) return this.#schedule(state, regular, state.round);
    const look = now + (this.#batches(state.spec) ? firstLook : Math.random() * FIRST_LOOK_MS);
    if (look < regular) this.#schedule(state, look);
    else this.#schedule(state, regular, state.round);
  }

  #batches(spec: SecretSpec): boolean {
    return this.#o.checkMany !== undefined && this.#o.batches?.(spec) === true && this.#o.groupWindowMs?.() !== undefined;
  }

  /**
   * The next regular check of a secret whose check (attempt issued at
   * state.attemptAt) just ended, or that was just added: one jittered interval
   * away, or for a batching secret the round it is in or joins (the header's
   * rule). Sets state.round to that round (undefined when on its own).
   */
  #regularDue(state: SecretState, now: number): number {
    const interval = this.intervalOf(state.spec);
    const member = state.round;
    delete state.round;
    if (!this.#batches(state.spec)) return now + this.#jittered(interval);
    state.round = this.#rounds.roundFor({
      interval,
      member,
      start: Math.min(state.attemptAt ?? now, now),
      now,
      jitter: this.#refresh.jitter,
      windowMs: this.#o.groupWindowMs?.() ?? 0,
      jittered: (ms) => this.#jittered(ms),
    });
    return state.round;
  }

  /** Check every secret now (the file source changed, or a test asks). */
  checkAllNow(): void {
    for (const s of this.#states.values()) this.#schedule(s, this.#now()); // out of their rounds: they rejoin after
    this.#arm();
  }

  /** When the given secret is next due (for tests and debug endpoints). */
  nextDue(name: string): number | undefined {
    return this.#states.get(name)?.nextDue;
  }

  /** `round`: the round the secret is due in (when `due` is that round's time). */
  #schedule(state: SecretState, due: number, round?: number): void {
    state.token++;
    state.nextDue = due;
    if (round === due) state.round = round;
    else delete state.round;
    this.#heap.push(due, { name: state.spec.name, token: state.token });
  }

  /** Keep exactly one timer, for the earliest due entry. */
  #arm(): void {
    if (this.#stopped) return;
    // Drop stale entries at the top so the timer is armed for a live one.
    for (let top = this.#heap.peek(); top; top = this.#heap.peek()) {
      const s = this.#states.get(top.value.name);
      if (s && s.token === top.value.token) break;
      this.#heap.pop();
    }
    const top = this.#heap.peek();
    if (!top) return;
    if (this.#timer && this.#timerDue <= top.due) return;
    clearTimeout(this.#timer);
    this.#timerDue = top.due;
    // setTimeout caps at 2^31-1 ms; re-arming on wake handles longer waits.
    const delay = Math.min(Math.max(0, top.due - this.#now()), 2 ** 31 - 1);
    this.#timer = setTimeout(() => this.#tick(), delay);
    this.#timer.unref();
  }

  #tick(): void {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const now = this.#now();
    const window = this.#o.checkMany ? this.#o.groupWindowMs?.() : undefined;
    const horizon = window === undefined ? now : now + window;
    const due: SecretState[] = [];
    for (let top = this.#heap.peek(); top && top.due <= horizon; top = this.#heap.peek()) {
      this.#heap.pop();
      const s = this.#states.get(top.value.name);
      if (!s || s.token !== top.value.token || s.running) continue;
      due.push(s);
    }
    if (window !== undefined && due.length > 1) {
      this.#startGroup(due);
    } else {
      for (const s of due) this.#track(this.#runCheck(s));
    }
    this.#arm();
  }

  #track(run: Promise<void>): void {
    const p = run.finally(() => this.#running.delete(p));
    this.#running.add(p);
  }

  /** One checkMany for the group; each member then goes on (retries, schedule) as if checked alone. */
  #startGroup(states: readonly SecretState[]): void {
    const now = this.#now();
    for (const s of states) {
      s.running = true;
      // The shared attempt counts from the round's time, not from a timer that fired late.
      s.attemptAt = Math.min(now, s.nextDue ?? now);
    }
    const signal = this.#abort.signal;
    const answers = this.#limit(() => this.#o.checkMany!(states.map((s) => s.spec), signal));
    for (const s of states) {
      const spec = s.spec;
      const mine = memberAnswer(answers, spec, () => this.#stopped);
      mine.catch(() => undefined); // handled by #runCheck's first attempt
      this.#track(this.#runCheck(s, mine));
    }
  }

  /** Check one secret until it succeeds, fails terminally or runs out of time; `first`: the group's answer as attempt 1. */
  async #runCheck(state: SecretState, first?: Promise<CheckOutcome>): Promise<void> {
    state.running = true;
    const spec = state.spec;
    const interval = this.intervalOf(spec);
    const signal = this.#abort.signal;
    let outcome: CheckOutcome | undefined;
    let shared = first;
    try {
      outcome = await pRetry(
        () => {
          if (shared) {
            const answer = shared;
            shared = undefined;
            return answer;
          }
          state.attemptAt = this.#now();
          return this.#limit(() => this.#o.check(spec, signal));
        },
        {
          retries: Infinity,
          // The SDK already retried 3 times (backoff from 50 ms, 1 s when throttled):
          // our first cycle-level retry waits at least that long, the last never beyond the interval.
          minTimeout: Math.min(1000, interval),
          maxTimeout: interval,
          factor: 2,
          randomize: true,
          maxRetryTime: interval,
          signal,
          unref: true,
          shouldRetry: ({ error }) => !this.#stopped && (error as SourceError).transient === true,
          onFailedAttempt: ({ error, attemptNumber, retryDelay }) => {
            // Aborted or dropped from the queue at shutdown: not a check error.
            if (this.#stopped) return;
            const e = error as SourceError;
            this.#o.onCheckResult?.(spec, e);
            if (e.transient) {
              this.#repeats.warn(`${e.code}\0${e.detail ?? e.message}`, spec.name, { secret: spec.name, code: e.code, attempt: attemptNumber, retryInMs: Math.round(retryDelay) }, e.message, e.detail);
            }
          },
        },
      );
    } catch (err) {
      if (this.#stopped) return;
      const e = err as SourceError;
      if (!e.transient) {
        const key = `${e.code}:${e.message}`;
        if (state.lastTerminal !== key) {
          state.lastTerminal = key;
          this.#o.log.error({ secret: spec.name, secretId: spec.id, code: e.code }, e.message);
        }
      }
    } finally {
      state.running = false;
    }
    if (this.#stopped || this.#states.get(spec.name) !== state) return;
    if (outcome) {
      this.#o.onCheckResult?.(spec, undefined);
      if (state.lastTerminal) {
        this.#o.log.info({ secret: spec.name }, 'secret is readable again');
        delete state.lastTerminal;
      }
    }
    const due = this.#nextDue(state, outcome);
    this.#schedule(state, due, state.round);
    this.#arm();
  }

  #nextDue(state: SecretState, outcome: CheckOutcome | undefined): number {
    const now = this.#now();
    const regular = this.#regularDue(state, now);
    if (!this.#refresh.rotationAware || !outcome) return regular;
    const { metadata, changed } = outcome;
    if (changed) delete state.rotation;
    // `r.at` and NextRotationDate are wall-clock dates; due times are monotonic: `wall` maps one onto the other.
    const wall = this.#wall();
    const next = metadata.rotationEnabled ? metadata.nextRotationDate?.getTime() : undefined;
    if (next !== undefined && next > wall - ROTATION_GRACE_MS && !changed && (!state.rotation || state.rotation.at !== next)) {
      // A new scheduled rotation: watch it.
      state.rotation = { at: next, probes: 0 };
    }
    const r = state.rotation;
    if (!r) return regular;
    if (r.at > wall) return Math.min(regular, now + (r.at - wall) + 1000);
    if (changed || r.probes >= ROTATION_PROBES) {
      delete state.rotation;
      return regular;
    }
    r.probes++;
    return Math.min(regular, now + 1000 * 2 ** r.probes);
  }

  /** Stop scheduling, abort checks in flight, wait for them to settle. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort.abort(new Error('shutting down'));
    this.#limit.clearQueue();
    await Promise.allSettled([...this.#running]);
  }
}
