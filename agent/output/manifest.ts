// What the files layout owns on the volume: `..manifest`.
//
//   outputDir/..manifest   {"layout":"files","files":["db.env","certs/tls.crt"],"dirs":["certs"]}
//
// The files layout removes only what this lists (files it wrote, directories it
// created); the generations layout reads it too, after a layout change, to know
// which of the old plain files and directories may give way to its links. The
// manifest lives on the volume, not in memory: a hot reload builds a new writer
// and a restart may change the layout. Another container can write the volume,
// so what is read back is checked like a payload path and only resolved
// through real directories; an unreadable or invalid manifest means "nothing
// owned" (logged), so nothing is removed on its word.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../observe/log.ts';
import { createFile, Dir, ignoreEnoent, lstatOrUndefined, READ_FLAGS, scanTree, syncDir } from './dir.ts';
import { errnoOf, ioError } from './errors.ts';
import { ancestors, MANIFEST, parentOf, tempName } from './names.ts';

/** The files and directories (relative to outputDir) the files layout wrote and may remove. */
export interface Manifest {
  readonly files: ReadonlySet<string>;
  readonly dirs: ReadonlySet<string>;
}

const NO_MANIFEST: Manifest = { files: new Set(), dirs: new Set() };

/**
 * Reads `..manifest` (missing: nothing owned). Another container can write the
 * volume, so every entry is checked like a payload path and only resolved
 * through real directories; an unreadable manifest means nothing is owned.
 */
export async function readManifest(out: Dir, outputDir: string, log: Logger | undefined): Promise<Manifest> {
  let text: string;
  try {
    const handle = await fs.open(out.at(MANIFEST), READ_FLAGS);
    try {
      if (!(await handle.stat()).isFile()) throw Object.assign(new Error('not a file'), { code: 'EINVAL' });
      text = await handle.readFile({ encoding: 'utf8' });
    } finally {
      await handle.close();
    }
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return NO_MANIFEST;
    log?.warn({ outputDir, name: MANIFEST, code: errnoOf(e) }, 'ignoring an unreadable manifest: files it listed will not be removed');
    return NO_MANIFEST;
  }
  try {
    const m = JSON.parse(text) as { files?: unknown; dirs?: unknown };
    const list = (v: unknown): Set<string> => new Set(Array.isArray(v) ? v.filter((p): p is string => typeof p === 'string' && isSafePath(p)) : []);
    return { files: list(m.files), dirs: list(m.dirs) };
  } catch {
    log?.warn({ outputDir, name: MANIFEST }, 'ignoring a manifest that is not valid JSON: files it listed will not be removed');
    return NO_MANIFEST;
  }
}

/** Replaces `..manifest` atomically (temp file, fsync, rename, fsync outputDir). */
export async function writeManifest(out: Dir, m: Manifest, outputDir: string, state: string): Promise<void> {
  const sorted = (s: ReadonlySet<string>) => [...s].sort();
  const content = Buffer.from(JSON.stringify({ layout: 'files', files: sorted(m.files), dirs: sorted(m.dirs) }) + '\n');
  const temp = tempName('manifest');
  try {
    await createFile(out, temp, { path: MANIFEST, content, mode: 0o644 }, MANIFEST, outputDir, state);
    await fs.rename(out.at(temp), out.at(MANIFEST));
    await syncDir(out);
  } catch (e) {
    await fs.unlink(out.at(temp)).catch(() => undefined);
    throw ioError(e, `writing ${MANIFEST} to`, outputDir, state);
  }
}

export function sameManifest(a: Manifest, b: Manifest): boolean {
  const eq = (x: ReadonlySet<string>, y: ReadonlySet<string>) => x.size === y.size && [...x].every((p) => y.has(p));
  return eq(a.files, b.files) && eq(a.dirs, b.dirs);
}

function isSafePath(p: string): boolean {
  return p !== '' && !p.startsWith('/') && !p.includes('\0') && p.split('/').every((s) => s !== '' && !s.startsWith('..') && s !== '.');
}


/** Whether the directory `rel` was made by the agent and holds nothing but files it owns (so it may be removed). */
export async function ownsTree(parent: Dir, name: string, rel: string, m: Manifest): Promise<boolean> {
  if (!m.dirs.has(rel)) return false;
  let dir: Dir;
  try {
    dir = await Dir.openChild(parent, name);
  } catch {
    return false;
  }
  let owned = true;
  try {
    await scanTree(dir, `${rel}/`, (_p, _n, r, kind) => {
      if (kind !== 'file' || !m.files.has(r) || !ancestors(r).every((d) => m.dirs.has(d))) owned = false;
      return Promise.resolve();
    });
  } finally {
    await dir.close();
  }
  return owned;
}

/**
 * Removes what the manifest lists except what `keep` says (files: regular
 * files and links, never followed; then the directories that became empty,
 * deepest first). A directory with anything else in it stays. Returns the
 * files removed.
 */
export async function removeOwned(out: Dir, m: Manifest, keep: (rel: string) => boolean): Promise<string[]> {
  const removed: string[] = [];
  const dirs = new Map<string, Dir>([['', out]]);
  const open = async (rel: string): Promise<Dir | undefined> => {
    if (dirs.has(rel)) return dirs.get(rel);
    const parent = await open(parentOf(rel));
    const d = parent && (await Dir.openChild(parent, path.posix.basename(rel)).catch(() => undefined));
    if (d) dirs.set(rel, d);
    return d;
  };
  try {
    for (const rel of [...m.files].sort()) {
      if (keep(rel)) continue;
      const parent = await open(parentOf(rel));
      const st = parent && (await lstatOrUndefined(parent.at(path.posix.basename(rel))));
      if (!parent || !st || st.isDirectory()) continue;
      await fs.unlink(parent.at(path.posix.basename(rel))).catch(ignoreEnoent);
      removed.push(rel);
    }
    for (const rel of [...m.dirs].sort((a, b) => b.length - a.length)) {
      if (keep(rel)) continue;
      const parent = await open(parentOf(rel));
      if (!parent) continue;
      await fs.rmdir(parent.at(path.posix.basename(rel))).catch((e: unknown) => {
        const code = errnoOf(e);
        if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw e;
      });
    }
  } finally {
    for (const [rel, d] of dirs) if (rel !== '') await d.close();
  }
  return removed;
}
