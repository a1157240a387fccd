// What one target run produced, before the notifier logs and counts it.

export type NotifyResult = 'success' | 'failure' | 'skipped';

export interface Outcome {
  readonly result: NotifyResult;
  /** One human sentence: what happened and, on failure, what to do. Never file contents. */
  readonly reason: string;
  /** Extra structured fields for the log record (pids, exit code, HTTP status …). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/** What every target runner receives. */
export interface RunContext {
  /** Relative paths that changed in this swap. */
  readonly changed: readonly string[];
  readonly outputDir?: string;
  readonly generation?: string;
  /** Aborted by `Notifier.stop()`: runners give up and report `skipped`. */
  readonly signal: AbortSignal;
}

/** `30000` -> `30s`, `1500` -> `1.5s`, `250` -> `250ms` (as users write durations in the config). */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}

export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

export const STOPPED: Outcome = { result: 'skipped', reason: 'cancelled: the agent is stopping' };
