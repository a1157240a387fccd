// The output stage (pipeline: fetch -> render -> write): puts one complete set
// of rendered files on the volume. This file is the contract (OutputWriter,
// WriteResult, WriterOptions) and createWriter; one file per concern beside it:
//
//   generations.ts  the `..data` layout and its numbered write algorithm
//   files.ts        the plain-files layout (subPath mounts), manifest.ts what it owns
//   serial.ts       what both layouts share: the volume lock per call, no overlap
//   validate.ts     payload validation (step 1 of both)
//   names.ts        the reserved `..` names and path arithmetic
//   dir.ts          the directory-descriptor file system (O_NOFOLLOW, no symlink followed)
//   errors.ts       the one shape of every error message
//   lock.ts         the volume lock (`..lock`)
//   targets.ts      several targets: each a subdirectory that is its own root
//
// The generations layout is Kubernetes' own (pkg/volume/util/atomic_writer.go):
// every render goes into a fresh hidden directory and one rename of the
// `..data` symlink publishes it, so an app that resolves `..data` once never
// sees the new certificate with the old key. Consumers that already handle
// ConfigMap/Secret volumes (inotify on `..data`, reading through the links)
// handle this one.
//
// The volume is shared with other containers, so everything on it except what
// this writer just created is treated as hostile (dir.ts): names are resolved
// relative to an open directory descriptor, files are opened with O_NOFOLLOW,
// and a symlink the writer did not create is replaced or ignored, never followed.
//
// What the agent owns on the volume is read from the volume itself, never kept
// in memory (a hot reload builds a new writer; a restart may change the layout):
// the generations layout is self-describing (`..data`, generation dirs, links
// into `..data`), and the files layout keeps `..manifest`, the list of the files
// and directories it wrote. Only those are ever removed. One process writes a
// volume at a time: both layouts hold the volume lock (lock.ts).
import path from 'node:path';
import type { Logger } from '../observe/log.ts';
import type { RenderedFile } from '../types.ts';
import { FilesWriter } from './files.ts';
import { GenerationsWriter } from './generations.ts';
import { TargetsWriter } from './targets.ts';

export interface WriteResult {
  /**
   * Paths (relative to outputDir) whose bytes, mode or owner changed, were added
   * or removed; sorted. Empty = nothing written, nothing repaired.
   *
   * A repaired link (generations layout: the payload equals the live generation
   * but a user-visible name was missing, a planted symlink, a foreign file, or
   * a directory the files layout left) writes no new generation: `generation`
   * stays the live one, and `changed` lists every payload path under each
   * top-level name whose link was made or replaced (a repaired `certs` link
   * reports `certs/tls.crt` and `certs/tls.key`), so the consumers of those
   * files are notified. Removing leftovers (stale links, prepare()'s clean-up)
   * is not reported. In the files layout a planted symlink or foreign file at
   * a file's name is rewritten and reported like any changed file.
   */
  readonly changed: readonly string[];
  /** Name of the generation dir now in use (generations layout), e.g. "..2026_11_28_06_00_00.123456789". Unset with targets (each has its own: `targets`). */
  readonly generation?: string;
  /** With targets (config `targets:`): what each target's own write did, in the order written. `changed` above is the union. */
  readonly targets?: readonly TargetWrite[];
}

/** One target's part of a write (TargetsWriter, targets.ts). */
export interface TargetWrite {
  readonly target: string;
  /** `target/path` of what changed in this target (relative to outputDir, as in WriteResult.changed). */
  readonly changed: readonly string[];
  /** The target's live generation (generations layout). */
  readonly generation?: string;
}

export interface OutputWriter {
  /** Create outputDir if missing and take the volume lock (lock.ts), waiting a bounded time for another agent; WriteError ELOCKED if it keeps it. prepare() and write() take it too. */
  lock(): Promise<void>;
  /** Create outputDir if missing (0755), remove leftovers of an interrupted write (..data_tmp, generation dirs not pointed to by ..data, temp files), validate that outputDir itself is a real directory. */
  prepare(): Promise<void>;
  /** Write one complete set of files atomically. Compares with what is on disk first: identical bytes+mode+owner for every file and the same file set -> no write at all, changed = [] (unless a link had to be repaired: see WriteResult.changed). */
  write(files: readonly RenderedFile[]): Promise<WriteResult>;
}

export interface WriterOptions {
  /** Absolute path of the volume directory (a relative one is resolved against the cwd). */
  outputDir: string;
  /** `generations`: atomic `..data` switch. `files`: plain files, one rename per file (for `subPath` mounts). */
  layout: 'generations' | 'files';
  /**
   * Subdirectories of outputDir (config `targets:`, validated: safe, distinct,
   * none inside another), each its own root with its own layout state and
   * lock (targets.ts). Empty or absent: outputDir is the one root.
   */
  targets?: readonly string[];
  log?: Logger;
}

/**
 * Creates the writer for one output directory (with `targets`: for each of
 * its target subdirectories, written in that order; targets.ts).
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
  if (options.targets !== undefined && options.targets.length > 0) return new TargetsWriter(outputDir, options.layout, options.targets, options.log);
  return options.layout === 'files' ? new FilesWriter(outputDir, options.log) : new GenerationsWriter(outputDir, options.log);
}
