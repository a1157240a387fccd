// Several targets in one outputDir (config `targets:`): each target is a
// subdirectory of outputDir that is its own writer root, with its own layout
// state (`..data` and generations, or `..manifest`) and its own volume lock
// (`..lock`), so a pod can mount the one volume several times with
// `subPath: <target>`, each at the path an app read before.
//
// Why a subPath of a target works: kubelet bind-mounts the directory a subPath
// names (resolved once, at container start). A target directory is a real
// directory the writer never replaces, so the bind mount keeps showing what is
// inside it, and `..data` renamed inside it is seen at once. A subPath naming a
// file or a link (the user-visible names inside a generations root) is pinned
// to what it resolved to at container start and never sees a rotation.
//
// Contract of TargetsWriter (an OutputWriter over the whole payload):
// - Payload paths stay relative to outputDir; a file belongs to the target its
//   path starts with (`db-creds/DB_PASSWORD` -> target `db-creds`, path
//   `DB_PASSWORD` inside it). A path under no target is rejected (UNSAFE_PATH)
//   before anything is touched. Targets are never nested (config validation).
// - write() writes every target, in the order of `targets:`, each with one
//   call of its own writer: a target's switch is atomic (generations layout),
//   but there is no switch across targets: a reader of two targets can see one
//   rotated and the other not yet. A target whose files did not change is not
//   touched (no new generation). A target with no file left is emptied.
// - `changed` lists `target/path` for every target (sorted), so notify runs
//   once, after every target is written, with what changed anywhere.
// - A failure in one target stops the write there (the error says which
//   targets were already written). What those targets changed is remembered
//   and reported by the next write that returns, so their consumers are still
//   notified once the volume is complete again.
// - lock() and prepare() run on every target in order; prepare() also removes
//   a link `<target> -> ..data/<target>` that a generations layout rooted at
//   outputDir left (before targets were configured), so the target can become
//   a real directory.
import fs from 'node:fs/promises';
import path from 'node:path';
import { WriteError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { RenderedFile } from '../types.ts';
import { errnoOf, ioError, UNCHANGED } from './errors.ts';
import { FilesWriter } from './files.ts';
import { GenerationsWriter } from './generations.ts';
import type { OutputWriter, TargetWrite, WriteResult } from './index.ts';
import { DATA } from './names.ts';

export class TargetsWriter implements OutputWriter {
  readonly outputDir: string;
  readonly #targets: readonly { readonly name: string; readonly writer: OutputWriter }[];
  readonly #log: Logger | undefined;
  /** `target/path` published by a write that then failed in a later target: reported by the next write that returns. */
  readonly #pending = new Set<string>();

  constructor(outputDir: string, layout: 'generations' | 'files', targets: readonly string[], log: Logger | undefined) {
    this.outputDir = outputDir;
    this.#log = log;
    this.#targets = targets.map((name) => {
      const dir = path.join(outputDir, name);
      return { name, writer: layout === 'files' ? new FilesWriter(dir, log) : new GenerationsWriter(dir, log) };
    });
  }

  async lock(): Promise<void> {
    await this.#prepareRoot();
    for (const t of this.#targets) await t.writer.lock();
  }

  async prepare(): Promise<void> {
    await this.#prepareRoot();
    for (const t of this.#targets) await t.writer.prepare();
  }

  async write(files: readonly RenderedFile[]): Promise<WriteResult> {
    const parts = this.#partition(files);
    const written: string[] = [];
    const results: TargetWrite[] = [];
    const changed = new Set(this.#pending);
    for (const t of this.#targets) {
      let r: WriteResult;
      try {
        r = await t.writer.write(parts.get(t.name) ?? []);
      } catch (e) {
        if (written.length === 0 || !(e instanceof WriteError)) throw e;
        const first = written.join(', ');
        throw new WriteError(`${e.message} (target "${t.name}"; targets ${first} were already written, the targets after it were not: the next write completes them)`, e.code, { cause: e.cause });
      }
      const prefixed = r.changed.map((p) => `${t.name}/${p}`);
      for (const p of prefixed) {
        changed.add(p);
        this.#pending.add(p);
      }
      results.push({ target: t.name, changed: prefixed, ...(r.generation === undefined ? {} : { generation: r.generation }) });
      written.push(`"${t.name}"`);
    }
    this.#pending.clear();
    return { changed: [...changed].sort(), targets: results };
  }

  /** Splits the payload by target; paths become relative to their target. */
  #partition(files: readonly RenderedFile[]): Map<string, RenderedFile[]> {
    const parts = new Map<string, RenderedFile[]>();
    for (const f of files) {
      const t = this.#targets.find((x) => typeof f.path === 'string' && f.path.startsWith(`${x.name}/`));
      if (!t) {
        const names = this.#targets.map((x) => JSON.stringify(x.name)).join(', ');
        throw new WriteError(`file path ${JSON.stringify(f.path)} for ${this.outputDir} is not allowed: it is under none of the targets (${names}); nothing was written, ${UNCHANGED}; put the file under a target`, 'UNSAFE_PATH');
      }
      const list = parts.get(t.name) ?? [];
      list.push({ ...f, path: f.path.slice(t.name.length + 1) });
      parts.set(t.name, list);
    }
    return parts;
  }

  /** A link `<target> -> ..data/<target>` at outputDir's top level (a generations layout rooted at outputDir) gives way to the target directory. */
  async #prepareRoot(): Promise<void> {
    for (const t of this.#targets) {
      const top = t.name.split('/')[0]!;
      const at = path.join(this.outputDir, top);
      try {
        const st = await fs.lstat(at);
        if (!st.isSymbolicLink() || (await fs.readlink(at)) !== `${DATA}/${top}`) continue;
        await fs.unlink(at);
        this.#log?.info({ outputDir: this.outputDir, target: t.name }, 'removed the link a generations layout rooted at outputDir left where a target goes');
      } catch (e) {
        if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') continue;
        throw ioError(e, `checking the target "${t.name}" in`, this.outputDir, `nothing was written, ${UNCHANGED}`);
      }
    }
  }
}
