// The generations layout: every render is a new generation directory, published
// by one rename of `..data`. The layout and its invariants are on
// GenerationsWriter, the numbered write algorithm with each step's failure on
// its write(); the same numbers mark the steps in the code.
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { WriteError } from '../errors.ts';
import type { RenderedFile } from '../types.ts';
import { createFile, Dir, ignoreEnoent, lstatOrUndefined, makeDirs, readNames, removeEntry, replaceWithLink, scanTree, sameFile, syncDir } from './dir.ts';
import { errnoOf, ioError, UNCHANGED } from './errors.ts';
import type { OutputWriter, WriteResult } from './index.ts';
import { type Manifest, ownsTree, readManifest, removeOwned } from './manifest.ts';
import { DATA, DATA_TMP, firstSegment, GENERATION_RE, MANIFEST, nextGenerationName, TEMP_RE, topLevelNames } from './names.ts';
import { SerialWriter } from './serial.ts';
import { validateFiles } from './validate.ts';

/** The state after a failed (9) whose rollback failed too (rare: the volume is failing under us). */
const LINKS_MISSING = 'the new files are in place but some of their links could not be made';

/**
 * The atomic generations layout, Kubernetes' own (kubelet's
 * pkg/volume/util/atomic_writer.go):
 * ```
 * outputDir/
 *   ..2026_11_28_06_00_00.123456789/   one generation: every file of one render
 *   ..data -> ..2026_11_28_06_00_00.123456789
 *   db.env -> ..data/db.env            user-visible names are links
 *   certs -> ..data/certs              (for certs/tls.crt, certs/tls.key)
 * ```
 * Invariants, after every write() that returns:
 * - `..data` points to a complete generation (all files written, fsynced,
 *   0755 dirs); a generation is never modified once `..data` points to it.
 * - Every top-level name of the payload is a link `name -> ..data/name`.
 * - What is the agent's own is read from the volume, never kept in memory:
 *   `..data`, names of the generation shape, links of the form
 *   `x -> ..data/x`, and (after a layout change) what `..manifest` lists.
 *   Nothing else is removed.
 *
 * Consumers can watch `..data` (inotify sees the rename) to learn about updates.
 * A consumer that needs several files from one render resolves `..data` once and
 * reads them under that generation; reading `tls.crt` and `tls.key` through their
 * links can straddle a switch.
 */
export class GenerationsWriter extends SerialWriter implements OutputWriter {
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
   * Writes one render as a new generation. The algorithm, and what each step
   * does when it fails:
   *
   *  1. Validate the payload (validate.ts): every path relative, no empty, `.`
   *     or `..` segment, no segment starting with `..` (reserved), no
   *     duplicates, no path that is both a file and a directory; modes and
   *     owners in range. Fails before the volume is opened: nothing touched.
   *     Then open outputDir and take the volume lock (serial.ts); a failure
   *     there is a WriteError, nothing written.
   *  2. Find the live generation: `..data` must be a symlink (made by us) to a
   *     name of our generation shape that is a real directory. Anything else
   *     (missing, a planted link to elsewhere, a file) means "no live
   *     generation" (logged; the switch at 8 replaces it). Fails only on a
   *     directory at `..data` (EEXIST, not ours to delete) or an I/O error
   *     reading it: the previous files are unchanged.
   *  3. Compare the payload with the live generation, read through directory
   *     descriptors with O_NOFOLLOW (bytes, mode, owner, and the file set), and
   *     check the user-visible names: a foreign directory where a link must go
   *     is an error now (EEXIST), before anything is written; so is an I/O
   *     error reading. If nothing differs, only repair the links (9), remove
   *     what a files layout left and stale links (10), and return without a
   *     new generation: a link that cannot be repaired is a WriteError (the
   *     files are unchanged), the rest is logged.
   *  4. Create a new, uniquely named generation directory (mode 0700 while it
   *     is being filled). A name already taken moves to the next nanosecond
   *     (up to 100 times); any other failure: unchanged.
   *  5. Write each file into it: O_CREAT|O_EXCL|O_NOFOLLOW, fchown (if uid/gid
   *     given), fchmod to the mode, fsync.
   *  6. chmod the generation (and its subdirectories) 0755 and fsync them.
   *     A failure in 5 or 6 removes the new generation (if that fails too it
   *     is logged and prepare() removes it): unchanged.
   *  7. Create the `..data_tmp` symlink to the new generation, removing whatever
   *     held that name first.
   *  8. Rename `..data_tmp` over `..data`: the single atomic switch. fsync outputDir.
   *     A failure in 7 or 8 removes `..data_tmp` and the new generation:
   *     unchanged (EEXIST when a directory holds `..data`). Known gap: when the
   *     rename succeeded and only the fsync fails (not EINVAL/ENOTSUP), the
   *     same cleanup removes the generation `..data` now points to.
   *  9. Create or repair the user-visible links (`db.env -> ..data/db.env`,
   *     `certs -> ..data/certs`). A planted symlink or a foreign file at that
   *     name is replaced by a link made under a temp name and renamed over it,
   *     never written through; a directory the files layout made there
   *     (manifest.ts) is removed first. A failure rolls back: `..data` points
   *     to the previous generation again (or is removed if there was none),
   *     the links made for names the previous generation lacks are removed,
   *     and the new generation is removed: unchanged. If the rollback fails
   *     too (logged), the error says the new files are in place but some
   *     links are missing.
   * 10. Remove user-visible links (of the form `x -> ..data/x`) whose file is
   *     gone, then what a files layout left (after a layout change). A failure
   *     is logged: the new generation is complete and live; the next write
   *     retries.
   * 11. Remove the previous generation directory. A failure is logged and
   *     prepare() removes it.
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
        // (9) (10) only: no new generation; `changed` reports the files under the links repaired.
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

      // (10)
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
