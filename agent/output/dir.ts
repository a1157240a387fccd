// The directory-descriptor file system the writer works through.
//
// The volume is shared with other containers, so everything on it except what
// the writer just created is treated as hostile: names are resolved relative to
// an open directory descriptor (`/proc/self/fd/<fd>/<name>`, Node has no
// openat), files and directories are opened with O_NOFOLLOW, files are created
// with O_EXCL, and a FIFO planted where a file should be cannot block a read
// (O_NONBLOCK). A symlink is unlinked or renamed over, never followed.
//
// Errors: the helpers throw the Node error as it is (the callers wrap it with
// ioError, errors.ts), except openOutputDir, createFile and readNames, which
// throw a WriteError in the shape of errors.ts themselves.
import { constants as C, type Stats } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WriteError } from '../errors.ts';
import type { RenderedFile } from '../types.ts';
import { errnoOf, ioError, UNCHANGED } from './errors.ts';
import { parentOf, tempName } from './names.ts';

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
const CREATE_FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
// O_NONBLOCK: a FIFO planted where a file should be must not hang the agent.
export const READ_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

let procFdWorks: boolean | undefined;

/**
 * An open directory. `at(name)` names an entry relative to the directory itself
 * (`/proc/self/fd/<fd>/<name>`), so renaming or replacing a path component with
 * a symlink cannot redirect us elsewhere. Without procfs (not Linux) it falls
 * back to the resolved path, checked with O_NOFOLLOW at each level.
 */
export class Dir {
  readonly handle: FileHandle;
  readonly base: string;

  constructor(handle: FileHandle, base: string) {
    this.handle = handle;
    this.base = base;
  }

  at(name: string): string {
    return `${this.base}/${name}`;
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  static async openRoot(absPath: string): Promise<Dir> {
    const handle = await fs.open(absPath, DIR_FLAGS);
    try {
      return new Dir(handle, await baseFor(handle, () => fs.realpath(absPath)));
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /** Opens `name` inside `parent`; fails with ELOOP on a symlink and ENOTDIR on anything but a directory. */
  static async openChild(parent: Dir, name: string): Promise<Dir> {
    const handle = await fs.open(parent.at(name), DIR_FLAGS);
    try {
      return new Dir(handle, await baseFor(handle, () => Promise.resolve(parent.at(name))));
    } catch (e) {
      await handle.close();
      throw e;
    }
  }
}

async function baseFor(handle: FileHandle, fallback: () => Promise<string>): Promise<string> {
  const proc = `/proc/self/fd/${handle.fd}`;
  if (procFdWorks === undefined) {
    try {
      const [viaProc, direct] = await Promise.all([fs.stat(proc), handle.stat()]);
      procFdWorks = viaProc.ino === direct.ino && viaProc.dev === direct.dev;
    } catch {
      procFdWorks = false;
    }
  }
  return procFdWorks ? proc : fallback();
}

/** Opens (creating if asked) outputDir; it must be a real directory, not a symlink to one. */
export async function openOutputDir(outputDir: string, create: boolean): Promise<Dir> {
  if (create) {
    try {
      const made = await fs.mkdir(outputDir, { recursive: true, mode: 0o755 });
      if (made !== undefined) await fs.chmod(outputDir, 0o755);
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST' && errnoOf(e) !== 'ENOTDIR') throw ioError(await realMkdirError(outputDir, e), 'creating', outputDir, 'nothing was written');
    }
  }
  try {
    return await Dir.openRoot(outputDir);
  } catch (e) {
    const code = errnoOf(e);
    // O_DIRECTORY|O_NOFOLLOW on a symlink to a directory fails with ENOTDIR, not ELOOP.
    const isLink = (code === 'ELOOP' || code === 'ENOTDIR') && (await fs.lstat(outputDir).catch(() => undefined))?.isSymbolicLink();
    if (isLink) {
      throw new WriteError(`outputDir ${outputDir} is a symlink, not a directory: nothing was written; point outputDir at the mounted directory itself`, 'UNSAFE_PATH', { cause: e });
    }
    if (code === 'ENOTDIR') {
      throw new WriteError(`outputDir ${outputDir} is not a directory: nothing was written; mount a volume (e.g. an emptyDir) there`, 'ENOTDIR', { cause: e });
    }
    throw ioError(e, 'opening', outputDir, 'nothing was written');
  }
}

/** Recursive mkdir reports ENOENT for a missing directory it could not create (EROFS, EACCES): ask the first missing one itself. */
async function realMkdirError(outputDir: string, e: unknown): Promise<unknown> {
  if (errnoOf(e) !== 'ENOENT') return e;
  for (let p = outputDir; path.dirname(p) !== p; p = path.dirname(p)) {
    if (!(await lstatOrUndefined(path.dirname(p)).catch(() => undefined))) continue;
    try {
      await fs.mkdir(p, 0o755);
      await fs.rmdir(p);
    } catch (real) {
      return real;
    }
    return e;
  }
  return e;
}

/** Creates (0755 whatever the umask) and opens the directories on the way to `rel` inside the new generation. */
export async function makeDirs(dirs: Map<string, Dir>, rel: string): Promise<Dir> {
  const have = dirs.get(rel);
  if (have) return have;
  const parent = await makeDirs(dirs, parentOf(rel));
  const name = path.posix.basename(rel);
  await fs.mkdir(parent.at(name), 0o700);
  const d = await Dir.openChild(parent, name);
  dirs.set(rel, d);
  return d;
}

/** (5) Creates `name` in `dir` exclusively, never through a symlink, with exactly the file's mode and owner, and fsyncs it. */
export async function createFile(dir: Dir, name: string, file: RenderedFile, rel: string, outputDir: string, state: string): Promise<void> {
  let doing = `writing "${rel}" to`;
  let chown = false;
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(dir.at(name), CREATE_FLAGS, 0o600);
    await handle.writeFile(file.content);
    if (file.uid !== undefined || file.gid !== undefined) {
      doing = `setting the owner of "${rel}" in`;
      chown = true;
      // Before fchmod: chown clears setuid/setgid bits.
      await handle.chown(file.uid ?? -1, file.gid ?? -1);
      chown = false;
    }
    doing = `setting the mode of "${rel}" in`;
    await handle.chmod(file.mode);
    doing = `writing "${rel}" to`;
    await handle.sync();
  } catch (e) {
    throw ioError(e, doing, outputDir, state, chown);
  } finally {
    await handle?.close();
  }
}

/** Whether `name` in `dir` is a regular file with exactly these bytes, mode and (when given) owner. */
export async function sameFile(dir: Dir, name: string, want: RenderedFile | undefined): Promise<boolean> {
  if (!want) return false;
  let handle: FileHandle;
  try {
    handle = await fs.open(dir.at(name), READ_FLAGS);
  } catch (e) {
    const code = errnoOf(e);
    // EACCES: a write-only mode (0200) on our own file; rewriting it is the safe answer.
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENXIO' || code === 'EISDIR' || code === 'EACCES') return false;
    throw e;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile() || (st.mode & 0o7777) !== want.mode || st.size !== want.content.length) return false;
    if ((want.uid !== undefined && st.uid !== want.uid) || (want.gid !== undefined && st.gid !== want.gid)) return false;
    return (await handle.readFile()).equals(want.content);
  } finally {
    await handle.close();
  }
}

export type EntryKind = 'file' | 'other';

/** Walks a tree through directory descriptors (never following a symlink), calling `visit` for every non-directory. */
export async function scanTree(
  dir: Dir,
  prefix: string,
  visit: (parent: Dir, name: string, rel: string, kind: EntryKind) => Promise<void>,
  descend: (name: string) => boolean = () => true,
): Promise<void> {
  for (const entry of await fs.readdir(dir.base, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    if (entry.isDirectory()) {
      if (!descend(entry.name)) continue;
      let sub: Dir;
      try {
        sub = await Dir.openChild(dir, entry.name);
      } catch (e) {
        const code = errnoOf(e);
        if (code === 'ENOENT') continue;
        if (code === 'ELOOP' || code === 'ENOTDIR') {
          await visit(dir, entry.name, rel, 'other');
          continue;
        }
        throw e;
      }
      try {
        await scanTree(sub, `${rel}/`, visit, descend);
      } finally {
        await sub.close();
      }
    } else {
      await visit(dir, entry.name, rel, entry.isFile() ? 'file' : 'other');
    }
  }
}

/** Removes `name` from `parent`: a directory recursively through descriptors, anything else (a symlink too) with unlink. */
export async function removeEntry(parent: Dir, name: string): Promise<void> {
  const st = await lstatOrUndefined(parent.at(name));
  if (!st) return;
  if (!st.isDirectory()) {
    await fs.unlink(parent.at(name)).catch(ignoreEnoent);
    return;
  }
  let dir: Dir;
  try {
    dir = await Dir.openChild(parent, name);
  } catch (e) {
    // Swapped for a symlink or file since the lstat: unlink that instead, never follow it.
    if (errnoOf(e) === 'ELOOP' || errnoOf(e) === 'ENOTDIR') return removeEntry(parent, name);
    if (errnoOf(e) === 'ENOENT') return;
    throw e;
  }
  try {
    for (const child of await fs.readdir(dir.base)) await removeEntry(dir, child);
  } finally {
    await dir.close();
  }
  await fs.rmdir(parent.at(name)).catch(ignoreEnoent);
}


/** Replaces whatever is at `name` (not a directory) by a symlink, atomically: link under a temp name, rename over. */
export async function replaceWithLink(out: Dir, name: string, target: string): Promise<void> {
  const temp = tempName(name);
  await fs.symlink(target, out.at(temp));
  try {
    await fs.rename(out.at(temp), out.at(name));
  } catch (e) {
    await fs.unlink(out.at(temp)).catch(() => undefined);
    throw e;
  }
}

export async function readNames(out: Dir, outputDir: string): Promise<string[]> {
  try {
    return await fs.readdir(out.base);
  } catch (e) {
    throw ioError(e, 'listing', outputDir, UNCHANGED);
  }
}

export async function syncDir(dir: Dir): Promise<void> {
  try {
    await dir.handle.sync();
  } catch (e) {
    // Some file systems cannot fsync a directory; the rename is still atomic there.
    if (errnoOf(e) !== 'EINVAL' && errnoOf(e) !== 'ENOTSUP') throw e;
  }
}

export async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw e;
  }
}

export function ignoreEnoent(e: unknown): void {
  if (errnoOf(e) !== 'ENOENT') throw e;
}
