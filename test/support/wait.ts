// Polling helpers shared by the end-to-end and chaos suites.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** Poll `cond` until it holds; resolves with the milliseconds it took, throws after timeoutMs. */
export async function waitUntil(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 15_000, stepMs = 25): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** A file's text, or `fallback` while it does not exist (mid-swap, not written yet). */
export async function readOr(path: string, fallback = ''): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return fallback;
  }
}
