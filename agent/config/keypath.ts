// Key paths as users read them: `files[2].mode`, `secrets.db.versionId`,
// `secrets["my.db"]` for keys that are not plain names.

export type KeySegment = string | number;

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

export function formatKeyPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/** The inverse of formatKeyPath; undefined when `text` is not a key path. */
export function parseKeyPath(text: string): KeySegment[] | undefined {
  const segments: KeySegment[] = [];
  const token = /\.?([A-Za-z_$][A-Za-z0-9_$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;
  let at = 0;
  while (at < text.length) {
    token.lastIndex = at;
    const m = token.exec(text);
    if (!m || (at === 0 && m[0].startsWith('.'))) return undefined;
    if (m[1] !== undefined) segments.push(m[1]);
    else if (m[2] !== undefined) segments.push(Number(m[2]));
    else {
      try {
        segments.push(JSON.parse(m[3] ?? '') as string);
      } catch {
        return undefined;
      }
    }
    at = token.lastIndex;
  }
  return segments;
}
