// The base class of both layouts (generations.ts, files.ts): every call takes
// the volume lock (lock.ts) and no two calls overlap.
import { WriteError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import { Dir, openOutputDir } from './dir.ts';
import { ioError, UNCHANGED } from './errors.ts';
import { lockVolume } from './lock.ts';

/**
 * What both layouts share: the directory, the logger, and the rule that calls
 * never overlap. The writers are not safe for concurrent callers (the caller
 * serializes); an overlapping call fails with EBUSY instead of racing.
 */
export abstract class SerialWriter {
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
