// One log line per cause, not one per secret per retry. When one cause fails
// many secrets (a broken secrets file, an endpoint down, a revoked role), each
// secret's retries would log the same line again and again: 10 secrets retried
// every second are 10 lines a second saying one thing.
//
// Contract:
// - A cause is the error's code and its text without the secret's name
//   (SourceError.detail): the same for every secret it fails.
// - The first occurrence of a cause is logged at once, naming its secret.
// - Later occurrences are counted; the next line for the cause comes no sooner
//   than `holdMs` after the last one, and says how many times and for how many
//   secrets it happened meanwhile (naming at most 10); each line doubles the
//   hold, up to `maxHoldMs`.
// - A cause not seen for twice its hold is forgotten: its next occurrence is
//   news again and is logged at once.
// - Time is monotonic (performance.now()): a wall-clock step changes nothing.
import type { Logger } from './log.ts';

export interface RepeatOptions {
  /** Hold after the first line. @default 5000 */
  readonly holdMs?: number;
  /** The longest hold. @default 600000 (10 min) */
  readonly maxHoldMs?: number;
  /** The clock, in ms. @default performance.now */
  readonly now?: () => number;
}

interface Cause {
  last: number;
  hold: number;
  repeats: number;
  secrets: Set<string>;
}

const MAX_NAMES = 10;

export class RepeatLimiter {
  readonly #log: Logger;
  readonly #holdMs: number;
  readonly #maxHoldMs: number;
  readonly #now: () => number;
  readonly #causes = new Map<string, Cause>();

  constructor(log: Logger, options: RepeatOptions = {}) {
    this.#log = log;
    this.#holdMs = options.holdMs ?? 5000;
    this.#maxHoldMs = options.maxHoldMs ?? 600_000;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Log `message` with `fields` at warn, unless the same `cause` was logged within its hold.
   * A repeat line says `detail` (the cause without one secret's name) and which secrets it failed.
   */
  warn(cause: string, secret: string, fields: Record<string, unknown>, message: string, detail = message): void {
    const now = this.#now();
    let c = this.#causes.get(cause);
    if (c && now - c.last > 2 * c.hold) {
      this.#causes.delete(cause);
      c = undefined;
    }
    if (!c) {
      this.#forgetOld(now);
      this.#causes.set(cause, { last: now, hold: this.#holdMs, repeats: 0, secrets: new Set() });
      this.#log.warn(fields, message);
      return;
    }
    c.repeats++;
    c.secrets.add(secret);
    if (now - c.last < c.hold) return;
    const names = [...c.secrets];
    const { secret: _one, ...rest } = fields;
    this.#log.warn(
      { ...rest, repeated: c.repeats, secrets: names.slice(0, MAX_NAMES), nextLineInMs: Math.min(c.hold * 2, this.#maxHoldMs) },
      `${detail} (again ${c.repeats} time(s) since the last line, for ${names.length} secret(s): ${names.slice(0, MAX_NAMES).join(', ')}${names.length > MAX_NAMES ? ', …' : ''})`,
    );
    c.last = now;
    c.hold = Math.min(c.hold * 2, this.#maxHoldMs);
    c.repeats = 0;
    c.secrets.clear();
  }

  /** Drop causes not seen for twice their hold, so the map stays as small as the causes that are live. */
  #forgetOld(now: number): void {
    for (const [k, c] of this.#causes) if (now - c.last > 2 * c.hold) this.#causes.delete(k);
  }
}
