// The volume lock: one agent process writes an outputDir at a time.
//
// Two agents on one volume (two init containers by mistake, an init container
// racing a sidecar) would otherwise interleave generations and delete each
// other's half-written work. Node has no flock, and flock would not help across
// the containers of a pod anyway when the volume is not local, so the lock is a
// lease file the agent owns in outputDir:
//
//   outputDir/..lock   {"pid":…,"start":"<ticks>","pidns":"pid:[…]","boot":"…","host":"…","since":"…"}
//
// - Taken with O_CREAT|O_EXCL|O_NOFOLLOW: exactly one process creates it.
// - The holder refreshes its mtime every REFRESH_MS while it holds it.
// - A lease is stale, and is taken over, when its holder is provably gone (same
//   boot and PID namespace, and /proc/<pid>/stat's start time (field 22) is not
//   the lease's: the pid is dead or reused), or when its mtime is older than
//   STALE_MS. The second rule is the one that works across containers: each has
//   its own PID namespace unless the pod sets shareProcessNamespace, so the pid
//   may not be visible; an agent killed with SIGKILL is replaced within STALE_MS.
// - A process holds a lease per outputDir once (the writers of a hot reload share
//   it) until release() or process exit (removed synchronously on 'exit'; after
//   SIGKILL the next agent takes it over as stale).
// - A waiter polls for up to its bound (WAIT_MS, longer than STALE_MS so a dead
//   holder's lease always expires within it), then fails with WriteError ELOCKED.
//   I/O errors (ENOSPC, EROFS) are thrown as they are: the writer explains them.
//
// Takeover renames the stale lease away (`..lock.tmp-<hex>`, a temp name both
// layouts' prepare() removes) and checks that it moved the very file it judged
// stale; a holder checks before each write that `..lock` is still its own file.
//
// A lost lease (docs/reliability.md, "The volume, kept"): at every refresh the
// holder checks that `..lock` is still its own file (same inode). When it is not
// (removed by a clean-up job or an operator, replaced, taken over by an agent
// that judged it stale) the holder logs it and tries to take it again at once,
// by the same rules as any agent: a missing lease or a stale one is taken (and
// the 'retaken' event tells the sidecar to verify and restore the volume); a
// live lease of another agent is respected: the volume is reported lost
// (lostLocks(), the 'lost' event: the sidecar is not ready) and the holder tries
// again at every refresh until that agent releases it or goes stale.
// Lease ages and deadlines inside this process are measured on the monotonic
// clock; only the lease's mtime, shared with other processes, is wall time.
import { randomBytes } from 'node:crypto';
import { constants as C, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WriteError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';

export const LOCK = '..lock';
/** How often a holder refreshes its lease's mtime. */
export const REFRESH_MS = 2_000;
/** A lease not refreshed for this long is stale. */
export const STALE_MS = 15_000;
/** How long a second agent waits for the lock before failing. */
export const WAIT_MS = 20_000;
const POLL_MS = 100;

interface LeaseInfo {
  pid?: number;
  start?: string;
  pidns?: string;
  boot?: string;
  host?: string;
  since?: string;
}

interface Held {
  readonly dir: string;
  readonly file: string;
  dev: number;
  ino: number;
  readonly timer: NodeJS.Timeout;
  readonly log: Logger | undefined;
  /** A refresh is running (refreshes never overlap). */
  busy?: boolean;
  /** A retake in progress (the refresh's and a write's share it). */
  retaking?: Promise<boolean> | undefined;
}

/** What happened to a lease this process held: 'lost' (another agent holds it now), 'retaken' (it is ours again after being removed, replaced or lost). */
export type LockEvent = { readonly dir: string; readonly event: 'lost' | 'retaken'; readonly reason: string; /** 'retaken': whether a 'lost' came before (else the lease was simply removed or replaced by a non-lease). */ readonly wasLost?: boolean };

const held = new Map<string, Held>();
/** Volumes whose lease this process held and another agent holds now: dir -> why. */
const lost = new Map<string, string>();
const listeners = new Set<(e: LockEvent) => void>();
let exitHookInstalled = false;

/** Subscribe to lost/retaken leases (the sidecar: readiness, and a verify of the volume once retaken). Returns the unsubscribe. */
export function onLockEvent(listener: (e: LockEvent) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The volumes whose lease this process held and lost to another agent (not yet taken back), with the reason. */
export function lostLocks(): ReadonlyMap<string, string> {
  return lost;
}

function emit(e: LockEvent): void {
  for (const l of listeners) {
    try {
      l(e);
    } catch {
      // A listener's failure is its own business.
    }
  }
}

/** This process's identity as written in a lease. */
function self(): Required<Pick<LeaseInfo, 'pid' | 'host'>> & LeaseInfo {
  return { pid: process.pid, start: startTimeOf(process.pid), boot: bootId(), host: os.hostname() };
}

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) is parenthesised and may hold spaces: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

let cachedNs: string | undefined | null = null;
async function pidNs(): Promise<string | undefined> {
  if (cachedNs === null) cachedNs = await fs.readlink('/proc/self/ns/pid').catch(() => undefined);
  return cachedNs;
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Whether this process holds the lease for `outputDir` (resolved). */
export function holdsLock(outputDir: string): boolean {
  return held.has(path.resolve(outputDir));
}

/**
 * Takes the lease on `outputDir` (which must exist), waiting up to `waitMs` for
 * another holder to release it or go stale. Idempotent within a process. A
 * lease this process held but lost (taken over after a stall) is dropped and
 * taken again. Throws WriteError ELOCKED when another agent keeps it.
 */
export async function lockVolume(outputDir: string, options: { log?: Logger | undefined; waitMs?: number } = {}): Promise<void> {
  const dir = path.resolve(outputDir);
  const mine = held.get(dir);
  if (mine) {
    if (stillOurs(mine)) return;
    // Removed, replaced or taken: take it back at once if it is free or stale (as the refresh does).
    if (await retake(mine)) return;
    // A live agent holds it (retake() logged that): wait for it like any agent.
    await dropLease(mine, false);
  }
  const waitMs = options.waitMs ?? WAIT_MS;
  const file = path.join(dir, LOCK);
  const deadline = performance.now() + waitMs;
  const me = await myLease();
  let waitingLogged = false;
  for (;;) {
    let handle: FileHandle;
    try {
      handle = await fs.open(file, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o644);
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e;
      const verdict = await judge(file, me, dir);
      if (verdict.stale) {
        options.log?.warn({ outputDir: dir, holder: verdict.info, reason: verdict.reason }, 'taking over a stale volume lock');
        await takeOver(file, dir, verdict.ino);
        continue;
      }
      if (performance.now() >= deadline) throw lockedError(dir, verdict.info, verdict.ageMs, waitMs);
      if (!waitingLogged) {
        waitingLogged = true;
        options.log?.warn({ outputDir: dir, holder: verdict.info, waitMs }, 'another agent holds the volume lock; waiting for it');
      }
      await sleep(POLL_MS);
      continue;
    }
    try {
      try {
        await handle.writeFile(JSON.stringify(me) + '\n');
        await handle.sync();
      } catch (e) {
        // A full volume still has the inode: an empty lease works (judged by its mtime alone),
        // so a write that needs no space (files already up to date) is not failed by the lock.
        if (errnoOf(e) !== 'ENOSPC' && errnoOf(e) !== 'EDQUOT') throw e;
        await handle.truncate(0);
      }
      const st = await handle.stat();
      await handle.close();
      const timer = setInterval(() => void refresh(dir), REFRESH_MS);
      timer.unref();
      // No descriptor is kept open: a held lease must not keep the volume busy (umount).
      held.set(dir, { dir, file, dev: st.dev, ino: st.ino, timer, log: options.log });
      installExitHook();
      if (waitingLogged) options.log?.info({ outputDir: dir }, 'took the volume lock');
      const wasLost = lost.get(dir);
      if (wasLost !== undefined) {
        lost.delete(dir);
        options.log?.warn({ outputDir: dir }, 'took the volume lock back');
        emit({ dir, event: 'retaken', reason: wasLost, wasLost: true });
      }
      return;
    } catch (e) {
      await handle.close().catch(() => undefined);
      await fs.unlink(file).catch(() => undefined);
      throw e;
    }
  }
}

/** Releases the lease on `outputDir` if this process holds it. */
export async function unlockVolume(outputDir: string): Promise<void> {
  const mine = held.get(path.resolve(outputDir));
  if (mine) await dropLease(mine, true);
}

async function dropLease(h: Held, unlink: boolean): Promise<void> {
  held.delete(h.dir);
  if (unlink) lost.delete(h.dir);
  clearInterval(h.timer);
  if (unlink && stillOurs(h)) await fs.unlink(h.file).catch(() => undefined);
}

function stillOurs(h: Held): boolean {
  try {
    const st = lstatSync(h.file);
    return st.ino === h.ino && st.dev === h.dev;
  } catch {
    return false;
  }
}

async function myLease(): Promise<LeaseInfo> {
  return { ...self(), pidns: await pidNs(), since: new Date().toISOString() };
}

async function refresh(dir: string): Promise<void> {
  const h = held.get(dir);
  if (!h || h.busy) return;
  h.busy = true;
  try {
    if (stillOurs(h)) {
      const now = new Date();
      await fs.lutimes(h.file, now, now).catch(() => undefined);
      return;
    }
    await retake(h);
  } catch (e) {
    h.log?.warn({ outputDir: dir, code: errnoOf(e) }, 'could not check the volume lock; trying again at the next refresh');
  } finally {
    h.busy = false;
  }
}

/**
 * `h` is no longer our file: take the lease again if it is missing or stale
 * (then 'retaken'), else record it as lost to its live holder (then 'lost',
 * logged once per holder). Returns whether it is ours again.
 */
function retake(h: Held): Promise<boolean> {
  h.retaking ??= retakeOnce(h).finally(() => (h.retaking = undefined));
  return h.retaking;
}

async function retakeOnce(h: Held): Promise<boolean> {
  const me = await myLease();
  for (let attempt = 0; attempt < 3; attempt++) {
    let handle: FileHandle;
    try {
      handle = await fs.open(h.file, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o644);
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e;
      const verdict = await judge(h.file, me, h.dir);
      if (verdict.ino === 0) continue; // removed meanwhile
      if (verdict.stale) {
        await takeOver(h.file, h.dir, verdict.ino);
        continue;
      }
      if (isMe(verdict.info, me)) {
        // Our own lease, copied back in place (another inode): adopt it rather than wait for ourselves.
        h.ino = verdict.ino;
        h.dev = (await fs.lstat(h.file)).dev;
        lost.delete(h.dir);
        h.log?.warn({ outputDir: h.dir }, `the volume lock file on ${h.dir} was replaced by a copy of this agent's own lease; keeping it`);
        return true;
      }
      const reason = `another agent holds it (${holderText(verdict.info) || 'unknown holder'})`;
      if (lost.get(h.dir) !== reason) {
        lost.set(h.dir, reason);
        h.log?.error(
          { outputDir: h.dir, holder: verdict.info },
          `the volume lock on ${h.dir} was lost: ${reason}; this agent writes nothing (a sidecar is not ready) until it takes the lock back, when that agent releases it or stops refreshing it`,
        );
        emit({ dir: h.dir, event: 'lost', reason });
      }
      return false;
    }
    try {
      await handle.writeFile(JSON.stringify(me) + '\n').catch((e: unknown) => {
        if (errnoOf(e) !== 'ENOSPC' && errnoOf(e) !== 'EDQUOT') throw e;
      });
      const st = await handle.stat();
      h.dev = st.dev;
      h.ino = st.ino;
    } finally {
      await handle.close();
    }
    const wasLost = lost.get(h.dir);
    lost.delete(h.dir);
    const reason = wasLost ?? 'the lease file was removed or replaced';
    h.log?.warn({ outputDir: h.dir, reason }, `the volume lock on ${h.dir} was not this agent's any more (${reason}); took it again`);
    emit({ dir: h.dir, event: 'retaken', reason, wasLost: wasLost !== undefined });
    return true;
  }
  return false;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const h of held.values()) {
      try {
        if (stillOurs(h)) unlinkSync(h.file);
      } catch {
        // Exiting: a lease left behind goes stale and is taken over.
      }
    }
  });
}

interface Verdict {
  stale: boolean;
  reason?: string;
  info: LeaseInfo;
  ino: number;
  ageMs: number;
}

async function judge(file: string, me: LeaseInfo, dir: string): Promise<Verdict> {
  let st;
  try {
    st = await fs.lstat(file);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return { stale: false, info: {}, ino: 0, ageMs: 0 }; // released meanwhile: retry at once
    throw e;
  }
  const ageMs = Date.now() - st.mtimeMs;
  if (st.isDirectory()) {
    throw new WriteError(`"${LOCK}" in ${dir} is a directory the agent did not create: nothing was written, the previous files are unchanged; names beginning with ".." are reserved for the agent; remove that directory`, 'EEXIST');
  }
  // A lease is always a regular file; a symlink or anything else there is not one.
  if (!st.isFile()) return { stale: true, reason: 'not a lease file', info: {}, ino: st.ino, ageMs };
  let info: LeaseInfo = {};
  try {
    const handle = await fs.open(file, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    try {
      const text = (await handle.readFile({ encoding: 'utf8' })).slice(0, 4096);
      const parsed: unknown = JSON.parse(text);
      if (parsed && typeof parsed === 'object') info = parsed;
    } finally {
      await handle.close();
    }
  } catch {
    // Being written right now, or garbage: only the mtime can tell.
  }
  if (info.boot !== undefined && info.boot === me.boot && info.pidns !== undefined && info.pidns === me.pidns && typeof info.pid === 'number') {
    const start = startTimeOf(info.pid);
    if (start === undefined || start !== info.start) return { stale: true, reason: `its holder (pid ${info.pid}) is gone`, info, ino: st.ino, ageMs };
    return { stale: false, info, ino: st.ino, ageMs };
  }
  if (ageMs > STALE_MS) return { stale: true, reason: `not refreshed for ${Math.round(ageMs / 1000)}s`, info, ino: st.ino, ageMs };
  return { stale: false, info, ino: st.ino, ageMs };
}

/** Moves the stale lease away, but only if it is still the file that was judged stale. */
async function takeOver(file: string, dir: string, ino: number): Promise<void> {
  const aside = path.join(dir, `${LOCK}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    await fs.rename(file, aside);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return;
    throw e;
  }
  const st = await fs.lstat(aside).catch(() => undefined);
  // Another waiter took it over first and holds a fresh lease: put that one back.
  if (st && st.ino !== ino) await fs.link(aside, file).catch(() => undefined);
  await fs.unlink(aside).catch(() => undefined);
}

/** A lease naming this very process (pid, its start time, PID namespace and boot). */
function isMe(info: LeaseInfo, me: LeaseInfo): boolean {
  return info.pid === me.pid && info.start !== undefined && info.start === me.start && info.pidns === me.pidns && info.boot === me.boot;
}

function holderText(info: LeaseInfo): string {
  return [
    info.pid !== undefined ? `pid ${info.pid}` : undefined,
    info.host ? `on host ${info.host}` : undefined,
    info.since ? `since ${info.since}` : undefined,
  ].filter(Boolean).join(' ');
}

function lockedError(dir: string, info: LeaseInfo, ageMs: number, waitMs: number): WriteError {
  const who = holderText(info);
  return new WriteError(
    `outputDir ${dir} is locked by another secrets-agent (${who || 'unknown holder'}, lease refreshed ${Math.max(0, Math.round(ageMs / 1000))}s ago) ` +
      `waiting ${Math.round(waitMs / 1000)}s for ${path.join(dir, LOCK)}: nothing was written, the previous files are unchanged; ` +
      'run one agent per volume (two init containers, or an init container and a sidecar, write the same volume at the same time?)',
    'ELOCKED',
  );
}

function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
