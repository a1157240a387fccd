// Durations are strings of number+unit parts: "500ms", "30s", "5m", "1h30m", "1.5h".
// "0" alone is also accepted (a zero splay reads naturally that way).

/** ECMA-262 source, also used as the JSON Schema `pattern`. */
export const DURATION_PATTERN = '^(?:0|(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h))+)$';
const DURATION_RE = new RegExp(DURATION_PATTERN);
const PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Every duration is at most a week: far beyond any sane interval, and safely
 * below setTimeout's 2^31-1 ms limit (beyond it, Node fires the timer at once).
 */
export const MAX_DURATION_MS = 168 * 3_600_000;
export const MAX_DURATION_TEXT = '168h';

/** Milliseconds (rounded), or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION_RE.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(PART_RE)) ms += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  return Math.round(ms);
}
