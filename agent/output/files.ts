// The files layout: plain files, one rename per file, for `subPath` mounts.
// Its contract is on FilesWriter; what it owns is in `..manifest` (manifest.ts).
import fs from 'node:fs/promises';
import path from 'node:path';
import { WriteError } from '../errors.ts';
import type { RenderedFile } from '../types.ts';
import { createFile, Dir, ignoreEnoent, lstatOrUndefined, readNames, removeEntry, sameFile, scanTree, syncDir } from './dir.ts';
import { errnoOf, ioError, UNCHANGED } from './errors.ts';
import type { OutputWriter, WriteResult } from './index.ts';
import { type Manifest, ownsTree, readManifest, removeOwned, sameManifest, writeManifest } from './manifest.ts';
import { ancestors, DATA, DATA_TMP, GENERATION_RE, parentOf, TEMP_RE, tempName, topLevelNames } from './names.ts';
import { SerialWriter } from './serial.ts';
import { validateFiles } from './validate.ts';

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
export class FilesWriter extends SerialWriter implements OutputWriter {
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
   * 1. Validate the payload (validate.ts, same rules as the generations layout).
   *    Fails before the volume is opened: nothing touched.
   * 2. Compare each file with what is on disk, opened through real directories
   *    with O_NOFOLLOW; a foreign directory at a file's name is an error now.
   *    Fails (EEXIST, or an I/O error opening a directory) with nothing written.
   * 3. If the file set grows, write the manifest listing old and new; write a
   *    complete temp file beside each changed file. A failure removes every
   *    temp file written so far: the previous files are unchanged (the manifest
   *    already lists the new names; a later write treats them as its own).
   * 4. Remove the agent's own directories that hold a name now wanted for a
   *    file; rename each temp file over its final name; fsync the directories.
   *    A failure removes the temp files not yet renamed; the error says whether
   *    any file was already replaced (this layout is not atomic across files).
   * 5. Delete files dropped from the payload and directories that became
   *    empty; write the manifest listing exactly the new set. A failure is
   *    logged, not thrown: the new files are in place, the next write retries.
   * 6. Remove what the generations layout left (after a layout change).
   *    Same: logged, retried by the next write (only a failure to list
   *    outputDir is thrown, though the new files are in place).
   *
   * `changed` lists the files rewritten (bytes, mode or owner differ, or the
   * name held no regular file, e.g. a planted symlink) and the files removed.
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
