// The rules for single values the schema checks beyond their type: a file
// mode, a relative file path (also checked again by render.ts for eachKey
// names), a signal name, a notify URL, a listen address. Each `...Reason` /
// `...Message` returns the message for a value that is not acceptable (in the
// shape of config/messages.ts; a URL is never quoted, it may carry a
// password), or undefined when it is. No zod here: schema.ts attaches them.
import { constants as osConstants } from 'node:os';
import type { RawIssue } from './fields.ts';
import { show } from './messages.ts';

export const PATH_SEGMENT = '[A-Za-z0-9_-][A-Za-z0-9._-]*';
export const LISTEN_PATTERN = '^(?:|(?:\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]*):[0-9]{1,5})$';
/** Linux's longest file name, in bytes. */
export const NAME_MAX = 255;

// --- file mode ----------------------------------------------------------------

/** The message for a mode written as a YAML/JSON number; `source` is the number as written. */
export function modeNumberMessage(source: string): string {
  const octal = /^0o?([0-7]{3})$/i.exec(source);
  if (octal) return `${source} is a number; quote it: "0${octal[1]}"`;
  return `${source} is a number; write the mode as a quoted octal string, e.g. "0440"`;
}

export function modeMessage(iss: RawIssue): string {
  const v = iss.input;
  if (typeof v === 'number') return modeNumberMessage(String(v));
  if (typeof v !== 'string') return `must be a quoted octal string like "0440", not ${show(v)}`;
  if (/^0?[1-7][0-7]{3}$/.test(v)) return `${show(v)} sets setuid, setgid or sticky bits, which are not allowed (e.g. "0440")`;
  if (/^0?[0-3][0-7]{2}$/.test(v)) return `${show(v)} does not let the owner read the file (use "0400" to "0777")`;
  return `${show(v)} is not an octal file mode (e.g. "0440")`;
}

// --- file path ------------------------------------------------------------------

/** Why `p` is not a safe relative path, or undefined when it is. */
export function unsafePathReason(p: string): string | undefined {
  if (p === '') return 'must not be empty';
  if (p.startsWith('/')) return `${show(p)} must be relative to outputDir (no leading "/")`;
  if (p.includes('\\')) return `${show(p)} must use "/" to separate directories, not "\\"`;
  for (const seg of p.split('/')) {
    if (seg === '') return `${show(p)} has an empty segment ("//" or a trailing "/")`;
    if (seg === '..' || seg === '.') return `${show(p)} must not contain "${seg}" (files stay inside outputDir)`;
    if (seg.startsWith('.')) return `${show(p)}: names starting with "." are reserved`;
    if (!new RegExp(`^${PATH_SEGMENT}$`).test(seg)) {
      return `${show(p)}: use only letters, digits, ".", "_" and "-" in names`;
    }
    if (Buffer.byteLength(seg) > NAME_MAX) return `${show(p)}: a name is longer than ${NAME_MAX} bytes, the most Linux allows (NAME_MAX)`;
  }
  return undefined;
}

// --- signals and URLs -------------------------------------------------------------

/** "hup", "HUP", "SIGHUP" -> "SIGHUP"; undefined when the platform has no such signal. */
export function normalizeSignal(name: string): NodeJS.Signals | undefined {
  const upper = name.toUpperCase();
  const full = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  return Object.hasOwn(osConstants.signals, full) ? (full as NodeJS.Signals) : undefined;
}

/**
 * Ports fetch() never connects to (the Fetch standard's "bad ports", as in
 * Node's undici): a notify URL on one fails every time with "bad port".
 */
export const FETCH_BAD_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117,
  119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636,
  989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/**
 * Why `v` cannot be a notify URL, or undefined when it can. Never quotes the
 * URL: it may carry a password.
 */
export function httpUrlReason(v: string): string | undefined {
  if (!/^https?:\/\/\S+$/i.test(v) || !URL.canParse(v)) return 'must be an http:// or https:// URL';
  const url = new URL(v);
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') return 'must be an http:// or https:// URL';
  // "@" before the path, even with an empty user and password (the JSON Schema's pattern says the same).
  if (url.username !== '' || url.password !== '' || /^[a-z]+:\/\/[^/?#\\]*@/i.test(v)) {
    return 'must not include a user name or password ("user:password@"): fetch refuses such URLs; remove them (the agent sends no credentials)';
  }
  const port = url.port === '' ? undefined : Number(url.port);
  if (port !== undefined && FETCH_BAD_PORTS.has(port)) {
    return `port ${port} is one fetch never connects to (a "bad port" of the Fetch standard); let the app's reload endpoint listen on another port`;
  }
  return undefined;
}

export function listenReason(v: string): string | undefined {
  if (v === '') return undefined;
  const m = new RegExp(LISTEN_PATTERN).exec(v);
  const port = m ? Number(v.slice(v.lastIndexOf(':') + 1)) : NaN;
  if (!m || port > 65_535) return `${show(v)} is not host:port (e.g. "0.0.0.0:9102"; "" disables the server)`;
  return undefined;
}
