// Where a key path is in the YAML/JSON source: 1-based lines, from the
// document's node ranges and a LineCounter.
import { isAlias, isMap, isNode, isPair, isScalar, isSeq, Scalar, type Document, type LineCounter, type Node } from 'yaml';
import type { KeySegment } from './keypath.ts';

interface Found {
  /** The node at the path (undefined for a key with an empty value). */
  readonly node: Node | undefined;
  /** The key node, when the last segment is a mapping key. */
  readonly key: Node | undefined;
}

export class SourceLines {
  readonly #doc: Document;
  readonly #lines: LineCounter;

  constructor(doc: Document, lines: LineCounter) {
    this.#doc = doc;
    this.#lines = lines;
  }

  /**
   * The line of the key at `path` (for a list item: where the item starts).
   * Used for "unknown key" and similar errors about the key itself.
   */
  keyLine(path: readonly KeySegment[]): number | undefined {
    const found = this.#find(path);
    if (!found) return undefined;
    return this.#lineAt(found.key ?? found.node);
  }

  /**
   * The line of the value at `path`. For a scalar value, the line where its
   * text begins: for a block scalar (`template: |` or `>`) that is the line
   * after the header, so line N of the value is line `valueLine + N - 1` of
   * the file. (For quoted or plain scalars that span lines, and for JSON
   * strings with `\n` escapes, lines of the value do not map 1:1 to the file.)
   * For a mapping or list value, the line of its key (or of the list item).
   */
  valueLine(path: readonly KeySegment[]): number | undefined {
    const found = this.#find(path);
    if (!found) return undefined;
    const { node, key } = found;
    if (isScalar(node) && node.value !== null && node.range) {
      const line = this.#lineAt(node);
      if (line === undefined) return undefined;
      return node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED ? line + 1 : line;
    }
    return this.#lineAt(key ?? node);
  }

  /** valueLine of `path`, else of its nearest ancestor that exists, else the document's first line. */
  nearestLine(path: readonly KeySegment[], at: 'key' | 'value' = 'value'): number {
    for (let n = path.length; n > 0; n--) {
      const prefix = path.slice(0, n);
      const line = n === path.length && at === 'key' ? this.keyLine(prefix) : this.valueLine(prefix);
      if (line !== undefined) return line;
    }
    return this.#lineAt(this.#doc.contents ?? undefined) ?? 1;
  }

  #find(path: readonly KeySegment[]): Found | undefined {
    let node: unknown = this.#doc.contents;
    let key: Node | undefined;
    for (const seg of path) {
      if (isAlias(node)) node = node.resolve(this.#doc);
      key = undefined;
      if (typeof seg === 'number' && isSeq(node)) {
        if (seg >= node.items.length) return undefined;
        node = node.items[seg];
      } else if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && keyText(p.key) === String(seg));
        if (!pair) return undefined;
        key = isNode(pair.key) ? pair.key : undefined;
        node = pair.value;
      } else {
        return undefined;
      }
    }
    return { node: isNode(node) ? node : undefined, key };
  }

  #lineAt(node: Node | undefined): number | undefined {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : this.#lines.linePos(offset).line;
  }
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  if (key === null || typeof key !== 'object') return String(key);
  return undefined;
}
