// Env files as the kubelet reads them for `env[].valueFrom.fileKeyRef`
// (Kubernetes EnvFiles; docs/env-files.md has every rule with its source).
// Pure: keys and values in, file bytes or a reason out. A reason names what is
// wrong with a value (a newline, a quote, ...), never the value itself.
//
// Two syntaxes, because the kubelet changed its parser between releases and no
// file reads the same in both:
// - `quoted` (Kubernetes 1.35 and later, the default): KEY='value', the value
//   literal between single quotes, newlines allowed. The same file gives the
//   same variables when a POSIX shell sources it (`set -a; . file`).
// - `plain` (Kubernetes 1.34, EnvFiles alpha): KEY=value, the value trimmed of
//   whitespace, a trailing backslash continues the line, quotes kept as they are.

export type EnvSyntax = 'quoted' | 'plain';

/** bufio.Scanner's default maximum token (a line without its newline must fit in it with the newline). */
export const KUBELET_MAX_LINE = 64 * 1024 - 1;
/** fileKeyRef.key: at most 128 characters while EnvFiles is alpha (1.34). */
export const KUBELET_MAX_KEY = 128;

/** Why `key` cannot be a key of an env file the kubelet reads (undefined: it can). */
export function envKeyProblem(key: string): string | undefined {
  if (key === '') return 'is empty';
  if (!/^[\x21-\x3c\x3e-\x7e]+$/.test(key)) return 'has a character the kubelet does not accept in a key (keys are printable ASCII without spaces and "=")';
  if (key.startsWith('#')) return 'starts with "#", which makes the line a comment';
  if (key.length > KUBELET_MAX_KEY) return `is longer than ${KUBELET_MAX_KEY} characters, the most Kubernetes 1.34 accepts in fileKeyRef.key`;
  return undefined;
}

// Go's unicode.IsSpace (what strings.TrimSpace trims), as a superset: JavaScript's \s.
const EDGE_SPACE = /^\s|\s$/u;

/** Why a value cannot be carried by an env file of `syntax` (undefined: it can). Never quotes the value. */
export function envValueProblem(value: Buffer, syntax: EnvSyntax): string | undefined {
  if (value.length === 0) return 'is empty, and the kubelet treats an empty value as a missing key (the container would not start)';
  if (value.includes(0)) return 'contains a NUL byte, which no environment variable can hold';
  const text = value.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(value)) return 'is not UTF-8 text';
  if (syntax === 'quoted') {
    if (text.includes("'")) return "contains a single quote ('), which the kubelet's quoted syntax (1.35+) cannot escape";
    if (text.includes('\r\n')) return 'contains a CR LF line break, and the kubelet drops the CR at the end of each line';
    const long = text.split('\n').some((line, i) => Buffer.byteLength(line) + (i === 0 ? KUBELET_MAX_KEY + 2 : 0) + 1 > KUBELET_MAX_LINE);
    if (long) return `has a line longer than the kubelet reads (${KUBELET_MAX_LINE} bytes)`;
    return undefined;
  }
  if (text.includes('\n') || text.includes('\r')) return 'contains a line break, which the 1.34 (plain) syntax cannot carry';
  if (EDGE_SPACE.test(text)) return 'starts or ends with whitespace, which the 1.34 (plain) syntax trims';
  if (text.endsWith('\\')) return 'ends with a backslash, which the 1.34 (plain) syntax reads as a line continuation';
  if (Buffer.byteLength(text) + 1 + KUBELET_MAX_KEY > KUBELET_MAX_LINE) return `is longer than the kubelet reads in one line (${KUBELET_MAX_LINE} bytes)`;
  return undefined;
}

/**
 * What a template always writes whatever the values, as far as the env file
 * cares: its text outside Liquid tags. Why that text cannot be a value of an
 * env file of `syntax` (undefined: it can, as far as one can tell offline).
 */
export function envTemplateProblem(template: string, syntax: EnvSyntax): string | undefined {
  const literal = template.replace(/\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}/g, '');
  if (literal.includes('\0')) return 'always contains a NUL byte, which no environment variable can hold';
  if (syntax === 'quoted') {
    if (literal.includes("'")) return "always contains a single quote ('), which the kubelet's quoted syntax (1.35+) cannot escape";
    if (literal.includes('\r\n')) return 'always contains a CR LF line break, and the kubelet drops the CR at the end of each line';
    return undefined;
  }
  if (literal.includes('\n') || literal.includes('\r')) return 'always contains a line break, which the 1.34 (plain) syntax cannot carry';
  return undefined;
}

/**
 * The env file for these entries, in order (keys unique and checked with
 * envKeyProblem, values with envValueProblem: the caller refuses what fails).
 */
export function formatEnvFile(entries: readonly (readonly [string, Buffer])[], syntax: EnvSyntax): Buffer {
  const lines = entries.map(([k, v]) => (syntax === 'quoted' ? `${k}='${v.toString('utf8')}'\n` : `${k}=${v.toString('utf8')}\n`));
  return Buffer.from(lines.join(''), 'utf8');
}
