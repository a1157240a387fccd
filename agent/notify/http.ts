// `http` targets: POST a small JSON body to the app's reload endpoint.
import type { NotifyTarget } from '../types.ts';
import { errorCode, formatDuration, STOPPED, type Outcome, type RunContext } from './outcome.ts';

type HttpTarget = Extract<NotifyTarget, { kind: 'http' }>;

/**
 * POST `{"changedFiles": [...], "generation": "..."}` (generation omitted when
 * unknown) with `content-type: application/json`.
 *
 * Success is a 2xx only. Redirects are never followed: a reload endpoint that
 * answers 3xx is misconfigured, and following one could send the request to
 * another host. The timeout covers connecting and receiving the response
 * headers; the response body is discarded unread.
 */
export async function runHttp(target: HttpTarget, ctx: RunContext): Promise<Outcome> {
  if (ctx.signal.aborted) return STOPPED;
  const body = JSON.stringify({ changedFiles: ctx.changed, generation: ctx.generation });
  let res: Response;
  try {
    res = await fetch(target.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      redirect: 'manual',
      signal: AbortSignal.any([AbortSignal.timeout(target.timeoutMs), ctx.signal]),
    });
  } catch (err) {
    if (ctx.signal.aborted) return STOPPED;
    if (err instanceof Error && err.name === 'TimeoutError') {
      return { result: 'failure', reason: `timed out after ${formatDuration(target.timeoutMs)}` };
    }
    // fetch() rejects with TypeError('fetch failed') whose cause carries the socket error code.
    // Only the code is reported: messages may quote the URL, which may carry credentials.
    const code = networkCode(err);
    return { result: 'failure', reason: `request failed: ${code}`, details: { code } };
  }
  // Free the connection; we never read the body.
  await res.body?.cancel().catch(() => undefined);

  const status = res.status;
  if (status >= 200 && status < 300) return { result: 'success', reason: `HTTP ${status}`, details: { status } };
  if (res.type === 'opaqueredirect' || (status >= 300 && status < 400)) {
    return { result: 'failure', reason: `HTTP ${status}: redirects are not followed; point the target at the final URL`, details: { status } };
  }
  return { result: 'failure', reason: `HTTP ${status}`, details: { status } };
}

function networkCode(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  const code = errorCode(cause) ?? errorCode(err);
  if (code !== undefined) return code;
  if (cause instanceof AggregateError) {
    const inner = cause.errors.map(errorCode).find((c) => c !== undefined);
    if (inner !== undefined) return inner;
  }
  // A cause without a code (undici's "bad port") is told by its message when that
  // cannot hold the URL: short, no ":", "/" or "@".
  if (cause instanceof Error) return /^[\w .,'-]{1,80}$/.test(cause.message) ? cause.message : cause.name;
  return err instanceof Error ? err.name : 'unknown error';
}
