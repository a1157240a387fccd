// A reader of env files that follows the kubelet's own parser, rule for rule
// (pkg/kubelet/util/env/env_util.go, ParseEnv; docs/env-files.md cites the
// commits), so tests can check what a container would see from a file the
// agent wrote, without a kubelet. Written from the Go source, not shared with
// the agent's writer (agent/render/envfile.ts): a test of the one against the
// other can fail.
//
// - `quoted`: Kubernetes 1.35 and later (PR kubernetes/kubernetes#134414).
// - `plain`: Kubernetes 1.34, EnvFiles alpha (PR kubernetes/kubernetes#132626).
//
// Result as the kubelet uses it (kubelet_pods.go, makeEnvironmentVariables):
// an error fails the container start ("couldn't parse env file"); "" (also
// what a missing key gives) means "key not found": the variable is skipped
// when optional, else the container does not start.

export type KubeletSyntax = 'quoted' | 'plain';
export type KubeletResult = { value: string } | { error: string };

/** bufio.MaxScanTokenSize: a line (with its newline) longer than this stops the scanner. */
const MAX_TOKEN = 64 * 1024;

/** bufio.Scanner with ScanLines: lines without "\n" and without one trailing "\r"; an error for a line too long. */
function* scanLines(data: Buffer): Generator<string, void, undefined> {
  let start = 0;
  while (start < data.length) {
    const nl = data.indexOf(0x0a, start);
    const end = nl < 0 ? data.length : nl;
    // The scanner's buffer holds the line and its newline; at EOF, the line alone.
    if (end - start + (nl < 0 ? 0 : 1) > MAX_TOKEN) throw new Error('bufio.Scanner: token too long');
    let line = data.subarray(start, end);
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, -1);
    yield line.toString('utf8');
    start = nl < 0 ? data.length : nl + 1;
  }
}

const trimLeft = (s: string, cut: string): string => {
  let i = 0;
  while (i < s.length && cut.includes(s[i]!)) i++;
  return s.slice(i);
};
const trimRight = (s: string, cut: string): string => {
  let i = s.length;
  while (i > 0 && cut.includes(s[i - 1]!)) i--;
  return s.slice(0, i);
};
// Go's strings.TrimSpace: unicode.IsSpace.
const GO_SPACE = '\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const trimSpace = (s: string): string => trimRight(trimLeft(s, GO_SPACE), GO_SPACE);

/** ParseEnv(file, key) of the kubelet of this syntax's versions. */
export function kubeletParseEnv(data: Buffer | string, key: string, syntax: KubeletSyntax): KubeletResult {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  try {
    return syntax === 'quoted' ? quoted(scanLines(bytes), key) : plain(scanLines(bytes), key);
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function quoted(lines: Generator<string, void, undefined>, key: string): KubeletResult {
  let lineNum = 0;
  for (let next = lines.next(); !next.done; next = lines.next()) {
    lineNum++;
    const line = trimLeft(next.value, ' \t');
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq === -1) return { error: `invalid environment variable format at line ${lineNum}: missing '='` };
    const namePart = line.slice(0, eq);
    const name = trimRight(namePart, ' \t');
    if (name === '') return { error: `invalid environment variable format at line ${lineNum}: empty variable name` };
    if (namePart !== name) return { error: `invalid environment variable format at line ${lineNum}: whitespace before '=' is not allowed` };
    const valuePart = line.slice(eq + 1);
    const trimmed = trimLeft(valuePart, ' \t');
    if (valuePart !== trimmed) {
      if (name === key) return { value: '' };
      continue;
    }
    if (!trimmed.startsWith("'")) return { error: `invalid environment variable format at line ${lineNum}: value must be enclosed in single quotes` };
    let value = '';
    let rest = trimmed.slice(1);
    const startLine = lineNum;
    for (;;) {
      const close = rest.indexOf("'");
      if (close !== -1) {
        value += rest.slice(0, close);
        const after = trimLeft(rest.slice(close + 1), ' \t');
        if (after !== '' && !after.startsWith('#')) return { error: `invalid environment variable format at line ${lineNum}: unexpected content after closing quote` };
        if (name === key) return { value };
        break;
      }
      value += `${rest}\n`;
      const more = lines.next();
      if (more.done) return { error: `invalid environment variable format starting at line ${startLine}: unclosed single quote` };
      lineNum++;
      rest = more.value;
    }
  }
  return { value: '' };
}

function plain(lines: Generator<string, void, undefined>, key: string): KubeletResult {
  let current = '';
  let inContinuation = false;
  let lineNum = 0;
  for (const raw of lines) {
    lineNum++;
    let line = trimLeft(raw, ' \t');
    if (line === '') {
      if (inContinuation) return { error: `invalid environment variable format at line ${lineNum}: blank line in continuation` };
      continue;
    }
    if (line.startsWith('#')) {
      if (inContinuation) return { error: `invalid environment variable format at line ${lineNum}: comment in continuation` };
      continue;
    }
    const trimmed = trimRight(line, ' \t');
    if (inContinuation) {
      if (trimmed.endsWith('\\')) {
        current += ` ${trimRight(trimmed.slice(0, -1), ' \t')}`;
        continue;
      }
      current += ` ${trimmed}`;
      line = current;
      inContinuation = false;
      current = '';
    } else if (trimmed.endsWith('\\')) {
      current = trimRight(trimmed.slice(0, -1), ' \t');
      inContinuation = true;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq === -1) return { error: `invalid environment variable format at line ${lineNum}` };
    const name = trimSpace(line.slice(0, eq));
    const value = trimRight(trimSpace(line.slice(eq + 1)), ' \t');
    if (name === '') return { error: `invalid environment variable format at line ${lineNum}` };
    if (name === key) return { value };
  }
  if (inContinuation) return { error: 'unexpected end of file: unfinished line continuation' };
  return { value: '' };
}
