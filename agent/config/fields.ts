// The building blocks the schema's fields are made of (schema.ts composes
// them): the one wording of a wrong-type message (typeError: a missing key, a
// null, a number where a string belongs), a non-empty string (text), and the
// two duration fields: `duration` (bounded, "500ms" to "168h") and a secret's
// `refreshInterval` (a duration or "never"). Each returns a zod schema whose
// messages follow config/messages.ts (values shown with `show`); the JSON
// Schema gets the same rules as patterns.
import * as z from 'zod';
import { DURATION_PATTERN, MAX_DURATION_MS, MAX_DURATION_TEXT, parseDuration } from './duration.ts';
import { show } from './messages.ts';

export type RawIssue = { readonly input?: unknown };

export function typeError(expected: string, hint = ''): (iss: RawIssue) => string {
  return (iss) => {
    if (iss.input === undefined) return `required key is missing${hint}`;
    if (iss.input === null) return `has no value${hint || '; give it one or remove the key'}`;
    if (expected === 'a string' && (typeof iss.input === 'number' || typeof iss.input === 'boolean')) {
      return `must be a string; quote it: "${String(iss.input)}"`;
    }
    return `must be ${expected}, not ${show(iss.input)}`;
  };
}

export function text(what: string, hint = ''): z.ZodString {
  return z.string({ error: typeError('a string', hint) }).min(1, { error: `must not be empty${hint}` }).describe(what);
}

// --- durations ---------------------------------------------------------------

function notADuration(iss: RawIssue): string {
  if (iss.input === undefined) return 'required key is missing';
  return `${show(iss.input)} is not a duration (use e.g. "30s", "5m", "1h")`;
}

export function duration(minMs: number, minText: string, description: string): z.ZodString {
  const ms = (v: string): number => parseDuration(v) ?? 0;
  return z
    .string({ error: notADuration })
    .regex(new RegExp(DURATION_PATTERN), { error: notADuration, abort: true })
    .refine((v) => ms(v) >= minMs, { error: (iss) => `${show(iss.input)} is too short (at least ${minText})`, abort: true })
    .refine((v) => ms(v) <= MAX_DURATION_MS, { error: (iss) => `${show(iss.input)} is too long (at most ${MAX_DURATION_TEXT})` })
    .describe(`${description} A duration like "500ms", "30s", "5m", "1h30m".`);
}

// --- refreshInterval: never (fetch once) -----------------------------------------

/** A secret's refreshInterval: a duration, or "never" (fetched once, never re-checked). */
export function refreshIntervalSchema(): z.ZodType<string> {
  const message = (iss: RawIssue): string => {
    if (typeof iss.input !== 'string') return notADuration(iss);
    const v = parseDuration(iss.input);
    if (v === undefined) return `${show(iss.input)} is not a duration (use e.g. "30s", "5m", "1h") or "never"`;
    if (v < 10) return `${show(iss.input)} is too short (at least 10ms; "never" fetches once and never re-checks)`;
    return `${show(iss.input)} is too long (at most ${MAX_DURATION_TEXT})`;
  };
  const valid = (v: string): boolean => {
    if (v === REFRESH_NEVER) return true;
    const ms = parseDuration(v);
    return ms !== undefined && ms >= 10 && ms <= MAX_DURATION_MS;
  };
  return z
    .string({ error: message })
    .refine(valid, { error: message })
    .meta({ anyOf: [{ const: REFRESH_NEVER }, { pattern: DURATION_PATTERN }] })
    .describe(
      'Check this secret at this interval instead of refresh.interval. A duration like "30s", "5m", "1h"; "never": fetched once at start, never re-checked (ESO\'s refreshInterval: 0).',
    );
}

/** `refreshInterval: never`. */
export const REFRESH_NEVER = 'never';

// --- end refreshInterval: never -----------------------------------------------------
