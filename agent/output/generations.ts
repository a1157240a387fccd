// The output writer: puts one complete set of rendered files on the volume.
//
// The generations layout is Kubernetes' own (pkg/volume/util/atomic_writer.go):
// every render goes into a fresh hidden directory and one rename of the
// `..data` symlink publishes it, so an app that resolves `..data` once never
// sees the new certificate with the old key. Consumers that already handle
// ConfigMap/Secret volumes (inotify on `..data`, reading through the links)
// handle this one.
//
// The volume is shared with other containers, so everything on it except what
// this writer just created is treated as hostile: names are resolved relative
// to an open directory descriptor (`/proc/self/fd/<fd>/<name>`, Node has no
// openat), files are opened with O_NOFOLLOW, and a symlink the writer did not
// create is replaced or ignored, never followed.
//
// What the agent owns on the volume is read from the volume itself, never kept
// in memory (a hot reload builds a new writer; a restart may change the layout):
// the generations layout is self-describing (`..data`, generation dirs, links
// into `..data`), and the files layout keeps `..manifest`, the list of the files
// and directories it wrote. Only those are ever removed. One process writes a
// volume at a time: both layouts hold the volume lock (lock.ts).
import { randomBytes } from 'node:crypto';
import { constants as C, type Stats } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { getSystemErrorMessage } from 'node:util';
import { WriteError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { RenderedFile } from '../types.ts';
import { lockVolume } from './lock.ts';

export interface WriteResult {
  /** Paths (relative to outputDir) whose bytes, mode or owner changed, were added or removed; sorted. Empty = nothing written. */
  readonly changed: readonly string[];
  /** Name of the generation dir now in use (generations layout), e.g. "..2026_11_28_06_00_00.123456789". */
  readonly generation?: string;
}

export interface OutputWriter {
  /** Create outputDir if missing and take the volume lock (lock.ts), waiting a bounded time for another agent; WriteError ELOCKED if it keeps it. prepare() and write() take it too. */
  lock(): Promise<void>;
  /** Create outputDir if missing (0755), remove leftovers of an interrupted write (..data_tmp, generation dirs not pointed to by ..data, temp files), validate that outputDir itself is a real directory. */
  prepare(): Promise<void>;
  /** Write one complete set of files atomically. Compares with what is on disk first: identical bytes+mode+owner for every file and the same file set -> no write at all, changed = []. */
  write(files: readonly RenderedFile[]): Promise<WriteResult>;
}

export interface WriterOptions {
  /** Absolute path of the volume directory (a relative one is resolved against the cwd). */
  outputDir: string;
  /** `generations`: atomic `..data` switch. `files`: plain files, one rename per file (for `subPath` mounts). */
  layout: 'generations' | 'files';
  log?: Logger;
}

/**
 * Creates the writer for one output directory.
 *
 * Contract (both layouts):
 * - Names whose first character pair is `..` are reserved for the writer: file
 *   paths may not have a segment starting with `..`.
 * - The writer is not safe for concurrent callers: the caller serializes
 *   `prepare()` and `write()` (a second call while one runs is rejected with
 *   WriteError code EBUSY rather than corrupting the volume).
 * - Modes are set with fchmod after creation, so the process umask never matters.
 * - An owner (uid/gid) left unspecified is not compared: a new file gets whatever
 *   owner the volume gives it (the agent's uid, the fsGroup of a setgid dir).
 * - Every error is a WriteError whose message says what failed, where, and that
 *   the previous files are unchanged (or, honestly, what state is left).
 */
export function createWriter(options: WriterOptions): OutputWriter {
  const outputDir = path.resolve(options.outputDir);
  return options.layout === 'files' ? new FilesWriter(outputDir, options.log) : new GenerationsWriter(outputDir, options.log);
}

const DATA = '..data';
const DATA_TMP = '..data_tmp';
/** `..2026_11_28_06_00_00.123456789`: UTC timestamp with nanoseconds. Only names of this exact shape are ever treated as ours. */
const GENERATION_RE = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$/;
/** `..<name>.tmp-<12 hex>`: temp files (files layout) and temp links (link repair). */
const TEMP_RE = /^\.\..*\.tmp-[0-9a-f]{12}$/;
const UNCHANGED = 'the previous files are unchanged';
/** The state after a failed (9) whose rollback failed too (rare: the volume is failing under us). */
const LINKS_MISSING = 'the new files are in place but some of their links could not be made';

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
const CREATE_FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
// O_NONBLOCK: a FIFO planted where a file should be must not hang the agent.
const READ_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

/**
 * The atomic generations layout:
 * ```
 * outputDir/
 *   ..2026_11_28_06_00_00.123456789/   one generation: every file of one render
 *   ..data -> ..2026_11_28_06_00_00.123456789
 *   db.env -> ..data/db.env            user-visible names are links
 *   certs -> ..data/certs              (for certs/tls.crt, certs/tls.key)
 * ```
 * Consumers can watch `..data` (inotify sees the rename) to learn about updates.
 * A consumer that needs several files from one render resolves `..data` once and
 * reads them under that generation; reading `tls.crt` and `tls.key` through their
 * links can straddle a switch.
 */
/**
 * What both layouts share: the directory, the logger, and the rule that calls
 * never overlap. The writers are not safe for concurrent callers (the caller
 * serializes); an overlapping call fails with EBUSY instead of racing.
 */
abstract class SerialWriter {
  readonly outputDir: string;
  readonly log: Logger | undefined;
  private busy = false;

  constructor(outputDir: string, log: Logger | undefined) {
    this.outputDir = outputDir;
    this.log = log;
  }

  lock(): Promise<void> {
    return this.serially(async () => (await this.open()).close());
  }

  /** Opens (creating) outputDir and takes the volume lock, held by this process from then on. */
  protected async open(): Promise<Dir> {
    const out = await openOutputDir(this.outputDir, true);
    try {
      await lockVolume(this.outputDir, { log: this.log });
    } catch (e) {
      await out.close();
      throw ioError(e, 'taking the volume lock in', this.outputDir, `nothing was written, ${UNCHANGED}`);
    }
    return out;
  }

  protected async serially<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new WriteError(`the writer for ${this.outputDir} is already busy: calls must not overlap (the caller serializes writes); nothing was written`, 'EBUSY');
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }
}

class GenerationsWriter extends SerialWriter implements OutputWriter {

  async prepare(): Promise<void> {
    return this.serially(async () => {
      const out = await this.open();
      try {
        const live = await this.findLiveGeneration(out);
        await live.dir?.close();
        const removed: string[] = [];
        for (const name of await readNames(out, this.outputDir)) {
          const leftover = name === DATA_TMP || TEMP_RE.test(name) || (GENERATION_RE.test(name) && name !== live.name);
          if (!leftover) continue;
          try {
            await removeEntry(out, name);
          } catch (e) {
            throw ioError(e, `removing the leftover "${name}" from`, this.outputDir, 'nothing else was changed');
          }
          removed.push(name);
        }
        if (removed.length > 0) this.log?.info({ outputDir: this.outputDir, removed }, 'removed leftovers of an interrupted write');
      } finally {
        await out.close();
      }
    });
  }

  /**
   * Writes one render as a new generation. The algorithm:
   *
   *  1. Validate the payload: every path relative, no empty, `.` or `..` segment,
   *     no segment starting with `..` (reserved), no duplicates, no path that is
   *     both a file and a directory; modes and owners in range.
   *  2. Find the live generation: `..data` must be a symlink (made by us) to a
   *     name of our generation shape that is a real directory. Anything else
   *     (missing, a planted link to elsewhere, a file) means "no live generation";
   *     a foreign directory at `..data` is an error.
   *  3. Compare the payload with the live generation, read through directory
   *     descriptors with O_NOFOLLOW (bytes, mode, owner, and the file set), and
   *     check the user-visible names: a foreign directory where a link must go
   *     is an error now, before anything is written. If nothing differs, only
   *     repair the links (9, 10) and return.
   *  4. Create a new, uniquely named generation directory (mode 0700 while it
   *     is being filled).
   *  5. Write each file into it: O_CREAT|O_EXCL|O_NOFOLLOW, fchown (if uid/gid
   *     given), fchmod to the mode, fsync.
   *  6. chmod the generation (and its subdirectories) 0755 and fsync them.
   *  7. Create the `..data_tmp` symlink to the new generation, removing whatever
   *     held that name first.
   *  8. Rename `..data_tmp` over `..data`: the single atomic switch. fsync outputDir.
   *  9. Create or repair the user-visible links (`db.env -> ..data/db.env`,
   *     `certs -> ..data/certs`). A planted symlink or a foreign file at that
   *     name is replaced by a link made under a temp name and renamed over it,
   *     never written through.
   * 10. Remove user-visible links (of the form `x -> ..data/x`) whose file is gone.
   * 11. Remove the previous generation directory.
   *
   * Steps 1-7 fail without touching the live generation and remove what they
   * created; a failure in 9 switches `..data` back and removes the new links and
   * generation. Failures in 10 and 11 only leave clutter (logged; prepare()
   * removes it), the new generation is complete and live.
   */
  async write(files: readonly RenderedFile[]): Promise<WriteResult> {
    return this.serially(async () => {
      return await this.writeGeneration(files);
    });
  }

  private async writeGeneration(files: readonly RenderedFile[]): Promise<WriteResult> {
    // (1)
    const desired = validateFiles(files, this.outputDir);
    const top = topLevelNames(desired.keys());
    const out = await this.open();
    try {
      // (2)
      const live = await this.findLiveGeneration(out);
      // (3)
      let changed: string[];
      let oldTop: Set<string>;
      try {
        if (live.dir) {
          const onDisk = await this.compareGeneration(live.dir, desired);
          changed = onDisk.changed;
          oldTop = onDisk.top;
        } else {
          changed = [...desired.keys()];
          oldTop = new Set();
        }
      } finally {
        await live.dir?.close();
      }
      // Left by the files layout (a layout change): its directories may give way to links.
      const owned = await readManifest(out, this.outputDir, this.log);
      await this.checkVisibleNames(out, top, owned);
      if (live.name !== undefined && changed.length === 0) {
        const fixed = await this.linkVisibleNames(out, top, [], UNCHANGED, owned);
        await this.removeFilesLayout(out, top, owned);
        await this.removeStaleLinks(out, top).catch((e: unknown) => {
          this.log?.warn({ outputDir: this.outputDir, code: errnoOf(e) }, 'could not remove links of removed files');
        });
        if (fixed.length > 0) this.log?.warn({ outputDir: this.outputDir, names: fixed }, 'repaired user-visible links');
        const repaired = [...desired.keys()].filter((p) => fixed.includes(firstSegment(p)));
        return { changed: repaired, generation: live.name };
      }

      // (4)
      const gen = await this.makeGenerationDir(out);
      try {
        // (5) (6)
        await this.fillGeneration(gen.dir, desired);
      } catch (e) {
        await gen.dir.close();
        await this.removeQuietly(out, gen.name);
        throw e;
      }
      await gen.dir.close();

      // (7) (8)
      try {
        await switchData(out, gen.name);
      } catch (e) {
        await this.removeQuietly(out, DATA_TMP);
        await this.removeQuietly(out, gen.name);
        if (errnoOf(e) === 'EISDIR' || errnoOf(e) === 'ENOTEMPTY') throw this.foreignDirectory(DATA, UNCHANGED, e);
        throw ioError(e, `switching ${DATA} in`, this.outputDir, UNCHANGED);
      }

      // (9)
      const created: string[] = [];
      try {
        await this.linkVisibleNames(out, top, created, LINKS_MISSING, owned);
      } catch (e) {
        const restored = await this.rollback(out, live.name, gen.name, created, oldTop);
        if (e instanceof WriteError && restored) {
          throw new WriteError(e.message.replace(LINKS_MISSING, UNCHANGED), e.code, { cause: e.cause });
        }
        throw e;
      }

      // (10)
      try {
        await this.removeStaleLinks(out, top);
      } catch (e) {
        this.log?.warn({ outputDir: this.outputDir, code: errnoOf(e) }, 'could not remove links of removed files; the new files are live');
      }

      await this.removeFilesLayout(out, top, owned);

      // (11)
      if (live.entry !== undefined && live.entry !== gen.name) {
        try {
          await removeEntry(out, live.entry);
        } catch (e) {
          this.log?.warn({ outputDir: this.outputDir, generation: live.entry, code: errnoOf(e) }, 'could not remove the previous generation; prepare() will');
        }
      }

      this.log?.info({ outputDir: this.outputDir, generation: gen.name, changed }, 'wrote a new generation');
      return { changed, generation: gen.name };
    } finally {
      await out.close();
    }
  }

  /** (2) `entry`: a generation-shaped name `..data` points to (to remove at 11); `name`/`dir`: set only when it is a real directory. */
  private async findLiveGeneration(out: Dir): Promise<{ name?: string; dir?: Dir; entry?: string }> {
    let st;
    try {
      st = await fs.lstat(out.at(DATA));
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return {};
      throw ioError(e, `reading ${DATA} in`, this.outputDir, UNCHANGED);
    }
    if (st.isDirectory()) throw this.foreignDirectory(DATA, UNCHANGED);
    if (!st.isSymbolicLink()) {
      this.log?.warn({ outputDir: this.outputDir, name: DATA }, 'a file the agent did not create holds ..data; it will be replaced');
      return {};
    }
    let target: string;
    try {
      target = await fs.readlink(out.at(DATA));
    } catch (e) {
      throw ioError(e, `reading ${DATA} in`, this.outputDir, UNCHANGED);
    }
    if (!GENERATION_RE.test(target)) {
      this.log?.warn({ outputDir: this.outputDir, name: DATA }, 'ignoring ..data: it does not point to a generation of this agent; it will be replaced');
      return {};
    }
    try {
      return { name: target, dir: await Dir.openChild(out, target), entry: target };
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') {
        this.log?.warn({ outputDir: this.outputDir, generation: target, code }, 'the generation ..data points to is missing or not a directory; writing a new one');
        return { entry: code === 'ENOENT' ? undefined : target };
      }
      throw ioError(e, `opening the generation ${target} in`, this.outputDir, UNCHANGED);
    }
  }

  /** (3) Which paths differ between the live generation and the payload (both directions), and its top-level names. */
  private async compareGeneration(dir: Dir, desired: ReadonlyMap<string, RenderedFile>): Promise<{ changed: string[]; top: Set<string> }> {
    const same = new Map<string, boolean>();
    try {
      await scanTree(dir, '', async (parent, name, rel, kind) => {
        same.set(rel, kind === 'file' && (await sameFile(parent, name, desired.get(rel))));
      });
    } catch (e) {
      throw ioError(e, 'reading the current files in', this.outputDir, UNCHANGED);
    }
    const changed = [...desired.keys()].filter((p) => same.get(p) !== true);
    for (const p of same.keys()) if (!desired.has(p)) changed.push(p);
    return { changed: changed.sort(), top: topLevelNames(same.keys()) };
  }

  /** (3) A foreign directory where a user-visible link must go cannot be replaced atomically, and is not ours to delete. */
  private async checkVisibleNames(out: Dir, top: ReadonlySet<string>, owned: Manifest): Promise<void> {
    for (const name of top) {
      let st: Stats | undefined;
      try {
        st = await lstatOrUndefined(out.at(name));
      } catch (e) {
        throw ioError(e, `checking "${name}" in`, this.outputDir, UNCHANGED);
      }
      if (st?.isDirectory() && !(await ownsTree(out, name, name, owned))) throw this.foreignDirectory(name, UNCHANGED);
    }
  }

  /** (10) After a layout change from files: what its manifest lists (names now links were replaced at 9), then the manifest. */
  private async removeFilesLayout(out: Dir, top: ReadonlySet<string>, owned: Manifest): Promise<void> {
    if (owned.files.size === 0 && owned.dirs.size === 0 && !(await lstatOrUndefined(out.at(MANIFEST)))) return;
    try {
      await removeOwned(out, owned, (rel) => top.has(firstSegment(rel)));
      await fs.unlink(out.at(MANIFEST)).catch(ignoreEnoent);
      this.log?.info({ outputDir: this.outputDir }, 'removed the files of the files layout (layout is now "generations")');
    } catch (e) {
      this.log?.warn({ outputDir: this.outputDir, code: errnoOf(e) }, 'could not remove the files of the files layout; the next write will');
    }
  }

  /** (4) */
  private async makeGenerationDir(out: Dir): Promise<{ name: string; dir: Dir }> {
    for (let attempt = 0; ; attempt++) {
      const name = nextGenerationName();
      try {
        await fs.mkdir(out.at(name), 0o700);
      } catch (e) {
        // Someone holds this name (a planted entry or a clock step back): take the next nanosecond.
        if (errnoOf(e) === 'EEXIST' && attempt < 100) continue;
        throw ioError(e, 'creating a generation directory in', this.outputDir, UNCHANGED);
      }
      try {
        return { name, dir: await Dir.openChild(out, name) };
      } catch (e) {
        await this.removeQuietly(out, name);
        throw ioError(e, 'opening the new generation directory in', this.outputDir, UNCHANGED);
      }
    }
  }

  /** (5) (6) */
  private async fillGeneration(gen: Dir, desired: ReadonlyMap<string, RenderedFile>): Promise<void> {
    const dirs = new Map<string, Dir>([['', gen]]);
    try {
      for (const [rel, file] of desired) {
        const parentRel = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
        let parent: Dir;
        try {
          parent = await makeDirs(dirs, parentRel);
        } catch (e) {
          throw ioError(e, `creating the directory for "${rel}" in`, this.outputDir, UNCHANGED);
        }
        await createFile(parent, path.posix.basename(rel), file, rel, this.outputDir, UNCHANGED);
      }
      // (6) Deepest first, so each directory's entries are durable before its parent's.
      for (const rel of [...dirs.keys()].sort((a, b) => b.length - a.length)) {
        const d = dirs.get(rel)!;
        try {
          await d.handle.chmod(0o755);
          await syncDir(d);
        } catch (e) {
          throw ioError(e, `finishing the generation directory in`, this.outputDir, UNCHANGED);
        }
      }
    } finally {
      for (const [rel, d] of dirs) if (rel !== '') await d.close();
    }
  }

  /**
   * (9) Makes every name in `top` a link `name -> ..data/name`. Returns the names
   * that were missing or wrong; names created from nothing are pushed to `created`.
   */
  private async linkVisibleNames(out: Dir, top: ReadonlySet<string>, created: string[], state: string, owned: Manifest): Promise<string[]> {
    const fixed: string[] = [];
    for (const name of top) {
      const target = `${DATA}/${name}`;
      const where = out.at(name);
      try {
        const st = await lstatOrUndefined(where);
        if (st?.isSymbolicLink() && (await fs.readlink(where)) === target) continue;
        if (st?.isDirectory()) {
          if (!(await ownsTree(out, name, name, owned))) throw this.foreignDirectory(name, state);
          await removeOwned(out, owned, (rel) => firstSegment(rel) !== name);
        }
        if (st === undefined) {
          try {
            await fs.symlink(target, where);
            created.push(name);
            fixed.push(name);
            continue;
          } catch (e) {
            if (errnoOf(e) !== 'EEXIST') throw e;
          }
        }
        if (!owned.files.has(name) && !owned.dirs.has(name)) this.log?.warn({ outputDir: this.outputDir, name }, 'replacing an entry the agent did not create with its link');
        await replaceWithLink(out, name, target);
        fixed.push(name);
      } catch (e) {
        if (e instanceof WriteError) throw e;
        if (errnoOf(e) === 'EISDIR' || errnoOf(e) === 'ENOTEMPTY') throw this.foreignDirectory(name, state, e);
        throw ioError(e, `linking "${name}" in`, this.outputDir, state);
      }
    }
    if (fixed.length > 0) await syncDir(out).catch(() => undefined);
    return fixed;
  }

  /** (10) Only links of the exact form `x -> ..data/x` are ours; anything else is left alone. */
  private async removeStaleLinks(out: Dir, top: ReadonlySet<string>): Promise<void> {
    for (const name of await readNames(out, this.outputDir)) {
      if (name.startsWith('..') || top.has(name)) continue;
      const st = await lstatOrUndefined(out.at(name));
      if (!st?.isSymbolicLink()) continue;
      if ((await fs.readlink(out.at(name))) !== `${DATA}/${name}`) continue;
      await fs.unlink(out.at(name)).catch(ignoreEnoent);
    }
  }

  /** Undo (7)-(9) after a failure in (9). Returns whether the previous generation is live again. */
  private async rollback(out: Dir, previous: string | undefined, gen: string, created: readonly string[], oldTop: ReadonlySet<string>): Promise<boolean> {
    try {
      if (previous !== undefined) {
        await switchData(out, previous);
      } else if ((await fs.readlink(out.at(DATA))) === gen) {
        await fs.unlink(out.at(DATA));
      }
      for (const name of created) {
        if (previous !== undefined && oldTop.has(name)) continue;
        await fs.unlink(out.at(name)).catch(ignoreEnoent);
      }
      await removeEntry(out, gen);
      return true;
    } catch (e) {
      this.log?.error({ outputDir: this.outputDir, generation: gen, code: errnoOf(e) }, 'could not switch back to the previous generation');
      return false;
    }
  }

  private async removeQuietly(out: Dir, name: string): Promise<void> {
    try {
      await removeEntry(out, name);
    } catch (e) {
      this.log?.warn({ outputDir: this.outputDir, name, code: errnoOf(e) }, 'could not remove a partial write; prepare() will');
    }
  }

  private foreignDirectory(name: string, state: string, cause?: unknown): WriteError {
    const why = name.startsWith('..')
      ? `names beginning with ".." are reserved for the agent; remove that directory`
      : `the agent needs that name for a link into ${DATA}; remove the directory or change the file paths`;
    return new WriteError(`"${name}" in ${this.outputDir} is a directory the agent did not create: ${state}; ${why}`, 'EEXIST', { cause });
  }
}

/**
 * The plain-files layout, for consumers that mount single files with `subPath`
 * (a subPath mount is bound to one inode and cannot follow the links of the
 * generations layout; note that Kubernetes never updates a subPath mount, so the
 * app sees new bytes only after a restart).
 *
 * Each changed file is written to `..<name>.tmp-<random>` in its own directory
 * (O_EXCL|O_NOFOLLOW, fchown, fchmod, fsync), and only when every temp file is
 * complete are they renamed over their final names, one by one. So a failure
 * while writing (ENOSPC) leaves every previous file unchanged, and each file is
 * always either old or new, never partial. But the set is NOT atomic across
 * files: a reader between two renames sees the new certificate with the old key.
 * Use the generations layout when files must change together.
 *
 * Unchanged files are not touched (same inode, same mtime). A planted symlink at
 * a final name is replaced by the rename, never followed.
 *
 * What this layout owns is listed in `..manifest` (files written, directories
 * created), replaced atomically: before a write that adds to it (so a crash
 * never leaves an unlisted file) and after it. Files dropped from the payload
 * (a hot reload, a restart with another config) are deleted with the
 * directories that became empty; a directory the agent made where a file must
 * now go (`certs/tls.crt` -> `certs`) is removed if it holds only files the
 * agent owns. Nothing the manifest does not list is removed. A volume that
 * held the generations layout loses its `..data`, generation dirs and links.
 */
class FilesWriter extends SerialWriter implements OutputWriter {
  async prepare(): Promise<void> {
    return this.serially(async () => {
      const out = await this.open();
      const removed: string[] = [];
      try {
        await scanTree(
          out,
          '',
          async (parent, name, rel) => {
            if (!TEMP_RE.test(name)) return;
            await fs.unlink(parent.at(name)).catch(ignoreEnoent);
            removed.push(rel);
          },
          // Generation dirs and other reserved names are not this layout's business.
          (name) => !name.startsWith('..'),
        );
      } catch (e) {
        throw ioError(e, 'removing leftover temp files from', this.outputDir, 'nothing else was changed');
      } finally {
        await out.close();
      }
      if (removed.length > 0) this.log?.info({ outputDir: this.outputDir, removed }, 'removed leftovers of an interrupted write');
    });
  }

  /**
   * 1. Validate the payload (same rules as the generations layout).
   * 2. Compare each file with what is on disk, opened through real directories
   *    with O_NOFOLLOW; a foreign directory at a file's name is an error now.
   * 3. If the file set grows, write the manifest listing old and new; write a
   *    complete temp file beside each changed file.
   * 4. Remove the agent's own directories that hold a name now wanted for a
   *    file; rename each temp file over its final name; fsync the directories.
   * 5. Delete files dropped from the payload and directories that became
   *    empty; write the manifest listing exactly the new set.
   * 6. Remove what the generations layout left (after a layout change).
   */
  async write(files: readonly RenderedFile[]): Promise<WriteResult> {
    return this.serially(async () => {
      return await this.writeFiles(files);
    });
  }

  private async writeFiles(files: readonly RenderedFile[]): Promise<WriteResult> {
    // (1)
    const desired = validateFiles(files, this.outputDir);
    const out = await this.open();
    const dirs = new Map<string, Dir>([['', out]]);
    const temps: { dir: Dir; temp: string; name: string; rel: string }[] = [];
    try {
      const owned = await readManifest(out, this.outputDir, this.log);
      // (2)
      const toWrite: string[] = [];
      /** Directories the agent made that hold a name now wanted for a file: emptied and removed before the renames. */
      const blockers: string[] = [];
      const newDirs = new Set<string>();
      for (const [rel, file] of desired) {
        const parent = await this.lookup(dirs, parentOf(rel));
        const name = path.posix.basename(rel);
        const st = parent && (await lstatOrUndefined(parent.at(name)));
        if (st?.isDirectory()) {
          if (!(await ownsTree(parent!, name, rel, owned))) {
            throw new WriteError(`"${rel}" in ${this.outputDir} is a directory the agent did not create: ${UNCHANGED}; remove the directory or change the file path`, 'EEXIST');
          }
          blockers.push(rel);
        }
        if (!parent || !st?.isFile() || !(await sameFile(parent, name, file))) toWrite.push(rel);
        if (!parent) for (const d of ancestors(rel)) if (!(await this.lookup(dirs, d))) newDirs.add(d);
      }
      const removed = [...owned.files].filter((rel) => !desired.has(rel));
      const wantedDirs = new Set([...desired.keys()].flatMap(ancestors));
      const allDirs = new Set([...owned.dirs, ...newDirs]);
      const final: Manifest = { files: new Set(desired.keys()), dirs: new Set([...allDirs].filter((d) => wantedDirs.has(d))) };

      // (3) The manifest first lists everything this write may leave behind, so a crash mid-write never orphans a file.
      if (toWrite.some((rel) => !owned.files.has(rel)) || newDirs.size > 0) {
        await writeManifest(out, { files: new Set([...owned.files, ...desired.keys()]), dirs: allDirs }, this.outputDir, UNCHANGED);
      }
      try {
        for (const rel of toWrite) {
          let dir: Dir;
          try {
            dir = await this.makeRealDirs(dirs, parentOf(rel), owned);
          } catch (e) {
            throw ioError(e, `creating the directory for "${rel}" in`, this.outputDir, UNCHANGED);
          }
          const name = path.posix.basename(rel);
          const temp = tempName(name);
          temps.push({ dir, temp, name, rel });
          await createFile(dir, temp, desired.get(rel)!, rel, this.outputDir, UNCHANGED);
        }
      } catch (e) {
        for (const t of temps) await fs.unlink(t.dir.at(t.temp)).catch(() => undefined);
        throw e;
      }

      // (4)
      try {
        const blocked = new Set(blockers);
        await removeOwned(out, owned, (rel) => !(blocked.has(rel) || ancestors(rel).some((d) => blocked.has(d))));
      } catch (e) {
        for (const t of temps) await fs.unlink(t.dir.at(t.temp)).catch(() => undefined);
        throw ioError(e, `removing the directory the agent made at "${blockers[0]}" in`, this.outputDir, 'some files the agent no longer writes may be gone');
      }
      const touched = new Set<Dir>();
      for (let i = 0; i < temps.length; i++) {
        const t = temps[i]!;
        try {
          await fs.rename(t.dir.at(t.temp), t.dir.at(t.name));
          touched.add(t.dir);
        } catch (e) {
          for (const rest of temps.slice(i)) await fs.unlink(rest.dir.at(rest.temp)).catch(() => undefined);
          const state = i === 0 ? UNCHANGED : `files renamed before it were already replaced (layout "files" is not atomic across files)`;
          if (errnoOf(e) === 'EISDIR') {
            throw new WriteError(`"${t.rel}" in ${this.outputDir} is a directory the agent did not create: ${state}; remove the directory or change the file path`, 'EEXIST', { cause: e });
          }
          throw ioError(e, `replacing "${t.rel}" in`, this.outputDir, state);
        }
      }
      for (const d of touched) await syncDir(d).catch(() => undefined);

      // (5) Files dropped from the payload, the directories that became empty, and the manifest.
      try {
        await removeOwned(out, { files: new Set(removed), dirs: allDirs }, (rel) => desired.has(rel) || wantedDirs.has(rel));
        if (!sameManifest(owned, final)) await writeManifest(out, final, this.outputDir, 'the new files are in place');
      } catch (e) {
        this.log?.warn({ outputDir: this.outputDir, code: errnoOf(e) }, 'could not remove files dropped from the payload; the next write will');
      }
      // (6)
      await this.removeGenerationsLayout(out, desired);

      const changed = [...toWrite, ...removed].sort();
      if (changed.length > 0) this.log?.info({ outputDir: this.outputDir, changed }, 'wrote files');
      return { changed };
    } finally {
      for (const [rel, d] of dirs) if (rel !== '') await d.close();
      await out.close();
    }
  }

  /** (6) After a layout change from generations: its links into `..data` (of names not written now), `..data`, and the generation dirs. */
  private async removeGenerationsLayout(out: Dir, desired: ReadonlyMap<string, RenderedFile>): Promise<void> {
    const names = await readNames(out, this.outputDir);
    if (!names.some((n) => n === DATA || GENERATION_RE.test(n))) return;
    const top = topLevelNames(desired.keys());
    try {
      for (const name of names) {
        if (name.startsWith('..') || top.has(name)) continue;
        const st = await lstatOrUndefined(out.at(name));
        if (st?.isSymbolicLink() && (await fs.readlink(out.at(name))) === `${DATA}/${name}`) await fs.unlink(out.at(name)).catch(ignoreEnoent);
      }
      const data = await lstatOrUndefined(out.at(DATA));
      if (data?.isSymbolicLink()) await fs.unlink(out.at(DATA)).catch(ignoreEnoent);
      for (const name of names) {
        if (name === DATA_TMP || GENERATION_RE.test(name)) await removeEntry(out, name);
      }
      this.log?.info({ outputDir: this.outputDir }, 'removed the entries of the generations layout (layout is now "files")');
    } catch (e) {
      this.log?.warn({ outputDir: this.outputDir, code: errnoOf(e) }, 'could not remove the entries of the generations layout; the next write will');
    }
  }

  /** The real directory at `rel` (no symlink followed anywhere), or undefined when it is missing or not a directory. */
  private async lookup(dirs: Map<string, Dir>, rel: string): Promise<Dir | undefined> {
    const have = dirs.get(rel);
    if (have) return have;
    const parent = await this.lookup(dirs, parentOf(rel));
    if (!parent) return undefined;
    try {
      const d = await Dir.openChild(parent, path.posix.basename(rel));
      dirs.set(rel, d);
      return d;
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return undefined;
      throw ioError(e, `opening "${rel}" in`, this.outputDir, UNCHANGED);
    }
  }

  /** Like lookup, but creates missing directories (0755) and replaces a symlink or file holding a directory's name. */
  private async makeRealDirs(dirs: Map<string, Dir>, rel: string, owned: Manifest): Promise<Dir> {
    const have = dirs.get(rel);
    if (have) return have;
    const parent = await this.makeRealDirs(dirs, parentOf(rel), owned);
    const name = path.posix.basename(rel);
    const st = await lstatOrUndefined(parent.at(name));
    if (st && !st.isDirectory()) {
      if (!owned.files.has(rel)) this.log?.warn({ outputDir: this.outputDir, name: rel }, 'replacing an entry the agent did not create with a directory');
      await fs.unlink(parent.at(name));
    }
    if (!st?.isDirectory()) await fs.mkdir(parent.at(name), 0o755);
    const d = await Dir.openChild(parent, name);
    dirs.set(rel, d);
    if (!st?.isDirectory()) await d.handle.chmod(0o755);
    return d;
  }
}

// ---- what the files layout owns: ..manifest ----

const MANIFEST = '..manifest';

/** The files and directories (relative to outputDir) the files layout wrote and may remove. */
interface Manifest {
  readonly files: ReadonlySet<string>;
  readonly dirs: ReadonlySet<string>;
}

const NO_MANIFEST: Manifest = { files: new Set(), dirs: new Set() };

/**
 * Reads `..manifest` (missing: nothing owned). Another container can write the
 * volume, so every entry is checked like a payload path and only resolved
 * through real directories; an unreadable manifest means nothing is owned.
 */
async function readManifest(out: Dir, outputDir: string, log: Logger | undefined): Promise<Manifest> {
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
async function writeManifest(out: Dir, m: Manifest, outputDir: string, state: string): Promise<void> {
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

function sameManifest(a: Manifest, b: Manifest): boolean {
  const eq = (x: ReadonlySet<string>, y: ReadonlySet<string>) => x.size === y.size && [...x].every((p) => y.has(p));
  return eq(a.files, b.files) && eq(a.dirs, b.dirs);
}

function isSafePath(p: string): boolean {
  return p !== '' && !p.startsWith('/') && !p.includes('\0') && p.split('/').every((s) => s !== '' && !s.startsWith('..') && s !== '.');
}

function ancestors(rel: string): string[] {
  const out: string[] = [];
  for (let d = parentOf(rel); d !== ''; d = parentOf(d)) out.push(d);
  return out;
}

/** Whether the directory `rel` was made by the agent and holds nothing but files it owns (so it may be removed). */
async function ownsTree(parent: Dir, name: string, rel: string, m: Manifest): Promise<boolean> {
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
async function removeOwned(out: Dir, m: Manifest, keep: (rel: string) => boolean): Promise<string[]> {
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

// ---- payload validation ----

const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4096;

/** (1) Returns the payload keyed by path, in sorted order, or throws WriteError UNSAFE_PATH / INVALID_FILE naming the rule. */
function validateFiles(files: readonly RenderedFile[], outputDir: string): Map<string, RenderedFile> {
  const reject = (p: string, rule: string, code = 'UNSAFE_PATH'): WriteError =>
    new WriteError(`file path ${JSON.stringify(p)} for ${outputDir} is not allowed: ${rule}; nothing was written, ${UNCHANGED}`, code);
  const byPath = new Map<string, RenderedFile>();
  for (const file of files) {
    const p = file.path;
    if (typeof p !== 'string' || p === '') throw reject(String(p), 'it must not be empty');
    if (p.startsWith('/')) throw reject(p, 'it must be relative to outputDir');
    if (p.includes('\0')) throw reject(p, 'it must not contain a NUL byte');
    if (Buffer.byteLength(p) > MAX_PATH_BYTES) throw reject(p, `it must be at most ${MAX_PATH_BYTES} bytes`);
    for (const segment of p.split('/')) {
      if (segment === '') throw reject(p, 'it must not contain an empty segment ("//" or a trailing "/")');
      if (segment === '.') throw reject(p, 'it must not contain a "." segment');
      if (segment === '..') throw reject(p, 'it must not contain a ".." segment');
      if (segment.startsWith('..')) throw reject(p, 'names beginning with ".." are reserved for the agent');
      if (Buffer.byteLength(segment) > MAX_NAME_BYTES) throw reject(p, `each name must be at most ${MAX_NAME_BYTES} bytes`);
    }
    if (byPath.has(p)) throw reject(p, 'two files have this path');
    if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o7777) throw reject(p, `mode ${String(file.mode)} is not a file mode (0 to 0o7777)`, 'INVALID_FILE');
    for (const [key, id] of [['uid', file.uid], ['gid', file.gid]] as const) {
      if (id !== undefined && (!Number.isInteger(id) || id < 0 || id > 0xfffffffe)) throw reject(p, `${key} ${String(id)} is not a valid id`, 'INVALID_FILE');
    }
    if (!Buffer.isBuffer(file.content)) throw reject(p, 'content must be a Buffer', 'INVALID_FILE');
    byPath.set(p, file);
  }
  for (const p of byPath.keys()) {
    for (let dir = parentOf(p); dir !== ''; dir = parentOf(dir)) {
      if (byPath.has(dir)) throw reject(dir, `it is a file, and "${p}" needs it to be a directory`);
    }
  }
  return new Map([...byPath].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function firstSegment(rel: string): string {
  const i = rel.indexOf('/');
  return i < 0 ? rel : rel.slice(0, i);
}

function topLevelNames(paths: Iterable<string>): Set<string> {
  const names = new Set<string>();
  for (const p of paths) names.add(firstSegment(p));
  return names;
}

// ---- names ----

// Wall clock in ns: Date.now() gives ms, hrtime the rest; strictly increasing per process.
const wallClockBaseNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
let lastGenerationNs = 0n;

function nextGenerationName(): string {
  let ns = wallClockBaseNs + process.hrtime.bigint();
  if (ns <= lastGenerationNs) ns = lastGenerationNs + 1n;
  lastGenerationNs = ns;
  const d = new Date(Number(ns / 1_000_000n));
  const two = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}_${two(d.getUTCMonth() + 1)}_${two(d.getUTCDate())}_${two(d.getUTCHours())}_${two(d.getUTCMinutes())}_${two(d.getUTCSeconds())}`;
  return `..${stamp}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

function tempName(name: string): string {
  // Keep within NAME_MAX: ".." + 200 + ".tmp-" + 12.
  return `..${name.slice(0, 200)}.tmp-${randomBytes(6).toString('hex')}`;
}

// ---- descriptor-relative file system ----

let procFdWorks: boolean | undefined;

/**
 * An open directory. `at(name)` names an entry relative to the directory itself
 * (`/proc/self/fd/<fd>/<name>`), so renaming or replacing a path component with
 * a symlink cannot redirect us elsewhere. Without procfs (not Linux) it falls
 * back to the resolved path, checked with O_NOFOLLOW at each level.
 */
class Dir {
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
async function openOutputDir(outputDir: string, create: boolean): Promise<Dir> {
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
async function makeDirs(dirs: Map<string, Dir>, rel: string): Promise<Dir> {
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
async function createFile(dir: Dir, name: string, file: RenderedFile, rel: string, outputDir: string, state: string): Promise<void> {
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
async function sameFile(dir: Dir, name: string, want: RenderedFile | undefined): Promise<boolean> {
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

type EntryKind = 'file' | 'other';

/** Walks a tree through directory descriptors (never following a symlink), calling `visit` for every non-directory. */
async function scanTree(
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
async function removeEntry(parent: Dir, name: string): Promise<void> {
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

/** (7) (8) Points `..data` at `generation` with one rename, then makes that durable. */
async function switchData(out: Dir, generation: string): Promise<void> {
  // (7) Whatever holds ..data_tmp (a crash leftover, a planted link or directory) goes first.
  await removeEntry(out, DATA_TMP);
  await fs.symlink(generation, out.at(DATA_TMP));
  // (8)
  try {
    await fs.rename(out.at(DATA_TMP), out.at(DATA));
  } catch (e) {
    await fs.unlink(out.at(DATA_TMP)).catch(() => undefined);
    throw e;
  }
  await syncDir(out);
}

/** Replaces whatever is at `name` (not a directory) by a symlink, atomically: link under a temp name, rename over. */
async function replaceWithLink(out: Dir, name: string, target: string): Promise<void> {
  const temp = tempName(name);
  await fs.symlink(target, out.at(temp));
  try {
    await fs.rename(out.at(temp), out.at(name));
  } catch (e) {
    await fs.unlink(out.at(temp)).catch(() => undefined);
    throw e;
  }
}

async function readNames(out: Dir, outputDir: string): Promise<string[]> {
  try {
    return await fs.readdir(out.base);
  } catch (e) {
    throw ioError(e, 'listing', outputDir, UNCHANGED);
  }
}

async function syncDir(dir: Dir): Promise<void> {
  try {
    await dir.handle.sync();
  } catch (e) {
    // Some file systems cannot fsync a directory; the rename is still atomic there.
    if (errnoOf(e) !== 'EINVAL' && errnoOf(e) !== 'ENOTSUP') throw e;
  }
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function ignoreEnoent(e: unknown): void {
  if (errnoOf(e) !== 'ENOENT') throw e;
}

// ---- errors ----

function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * `<what went wrong> <doing> <outputDir>: <state>; <what to do>`, e.g.
 * `no space left on device writing "tls.key" to /run/secrets/app: the previous files are unchanged; raise the emptyDir sizeLimit`.
 * The cause's own message is not used: it carries /proc/self/fd paths, not the user's.
 */
function ioError(cause: unknown, doing: string, outputDir: string, state: string, chown = false): WriteError {
  if (cause instanceof WriteError) return cause;
  const code = errnoOf(cause) ?? 'EIO';
  const [what, hint] = explain(code, cause, chown);
  return new WriteError(`${what} ${doing} ${outputDir}: ${state}${hint ? `; ${hint}` : ''}`, code, { cause });
}

function explain(code: string, cause: unknown, chown: boolean): [string, string] {
  switch (code) {
    case 'ENOSPC':
      return ['no space left on device', 'raise the emptyDir sizeLimit'];
    case 'EDQUOT':
      return ['disk quota exceeded', 'raise the quota of the volume'];
    case 'EACCES':
    case 'EPERM':
      return chown
        ? ['not permitted to set the owner', 'setting uid/gid needs root or CAP_CHOWN: grant it or drop uid/gid from the file']
        : ['permission denied', 'run the agent as a user that can write outputDir (securityContext runAsUser or fsGroup)'];
    case 'EROFS':
      return ['read-only file system (EROFS)', 'the volume is read-only: mount it writable in the agent container (volumeMounts readOnly: false)'];
    case 'EMFILE':
    case 'ENFILE':
      return ['too many open files', 'raise the open-file limit'];
    case 'ENAMETOOLONG':
      return ['name too long', 'use shorter file paths'];
    case 'EEXIST':
      return ['an unexpected entry appeared', 'another process is writing to outputDir: only the agent may write there'];
    default: {
      const errno = (cause as NodeJS.ErrnoException | undefined)?.errno;
      return [typeof errno === 'number' ? `${code} (${getSystemErrorMessage(errno)})` : `${code} error`, ''];
    }
  }
}
