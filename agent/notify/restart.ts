// `restart` targets: end the app container's main process, so that the kubelet
// starts the container again (restartPolicy Always) and the new start reads the
// new environment (an env file on the agent's volume, `fileKeyRef`).
//
// Which process: in a pod with `shareProcessNamespace: true`, pid 1 is the pod's
// pause process, and every container's main process has parent pid 0 (its parent,
// the runtime's shim, is outside the namespace); the processes those start have
// a parent inside. So the candidates are the processes with parent pid 0, other
// than pid 1 and the agent's own container's main process (the agent's ancestor
// with parent pid 0, or the agent itself). Exactly one of them must match
// `process` (a name: comm, argv[0] basename or executable basename; an absolute
// path: argv[0] or the executable); otherwise nothing is signalled and the
// failure names what was seen (pid, comm, argv[0]; never the arguments or the
// environment).
//
// Then: `signal` (default SIGTERM); wait for the process to be gone; SIGKILL
// after `graceMs` if it is still there. Reported once it is gone (or when the
// agent stops: the signal was sent, the wait is cut short).
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observe/log.ts';
import type { NotifyTarget } from '../types.ts';
import { errorCode, formatDuration, type Outcome, type RunContext } from './outcome.ts';
import { signalError, trySignal } from './signal.ts';

type RestartTarget = Extract<NotifyTarget, { kind: 'restart' }>;

const PROC = '/proc';
/** How often the process is looked at while the agent waits for it to exit. */
const POLL_MS = 50;
/** After SIGKILL: how long until a process that is still there is reported. */
export const AFTER_KILL_MS = 5000;

/** Workload kinds whose pods run to completion: the kubelet would not restart the container (docs/notify.md). */
export const BATCH_KINDS: readonly string[] = ['Job', 'CronJob'];

/** Why a restart notify cannot serve a workload of this kind, or undefined when it can. */
export function restartRefusal(kind: string): string | undefined {
  if (!BATCH_KINDS.includes(kind)) return undefined;
  return `a restart notify cannot serve a ${kind}: its pods run to completion (restartPolicy OnFailure or Never), so an app container ended by the agent is either not started again (Never, or exit code 0: the work is cut short) or started again as a failure counted against the Job's backoffLimit (OnFailure); remove the restart notify from the config (a ${kind} reads its secrets once, at start)`;
}

export interface ContainerProcess {
  readonly pid: number;
  readonly ppid: number;
  /** `/proc/<pid>/comm` (at most 15 bytes). */
  readonly comm: string;
  /** argv[0] as the process was started ('' when unreadable). */
  readonly argv0: string;
  /** The executable's path (`/proc/<pid>/exe`), when readable. */
  readonly exe?: string;
  /** Field 22 of `/proc/<pid>/stat`: with the pid, identifies this process (pids are reused). */
  readonly startTime: string;
}

/** One process from /proc, or undefined when it is gone, a zombie, or hidden. */
async function readProcess(pid: number): Promise<ContainerProcess | undefined> {
  const dir = `${PROC}/${pid}`;
  try {
    const [stat, comm, cmdline, exe] = await Promise.all([
      readFile(`${dir}/stat`, 'utf8'),
      readFile(`${dir}/comm`, 'utf8'),
      readFile(`${dir}/cmdline`, 'utf8').catch(() => ''),
      readlink(`${dir}/exe`).catch(() => undefined),
    ]);
    // `pid (comm) S ppid ...`: comm may hold ')' and spaces, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (state === 'Z' || state === 'X') return undefined;
    return {
      pid,
      ppid: Number(fields[1]),
      comm: comm.replace(/\n$/, ''),
      argv0: cmdline.split('\0', 1)[0] ?? '',
      ...(exe === undefined ? {} : { exe: exe.replace(/ \(deleted\)$/, '') }),
      startTime: fields[19] ?? '',
    };
  } catch {
    return undefined;
  }
}

async function listProcesses(): Promise<ContainerProcess[]> {
  const entries = (await readdir(PROC)).filter((e) => /^\d+$/.test(e));
  const found = await Promise.all(entries.map((e) => readProcess(Number(e))));
  return found.filter((p): p is ContainerProcess => p !== undefined);
}

/** The agent's own container's main process: its ancestor (or itself) whose parent is outside the namespace. */
function ownContainerMain(all: readonly ContainerProcess[]): number {
  const byPid = new Map(all.map((p) => [p.pid, p]));
  let at = byPid.get(process.pid);
  for (let hops = 0; at !== undefined && at.ppid !== 0 && hops < 64; hops++) {
    const parent = byPid.get(at.ppid);
    if (parent === undefined) break;
    at = parent;
  }
  return at?.pid ?? process.pid;
}

/** Does `p` answer to `wanted` (a name, or an absolute path)? */
export function processMatches(p: ContainerProcess, wanted: string): boolean {
  if (wanted.startsWith('/')) return p.argv0 === wanted || p.exe === wanted;
  return p.comm === wanted || (p.argv0 !== '' && basename(p.argv0) === wanted) || (p.exe !== undefined && basename(p.exe) === wanted);
}

/** `pid 12 "nginx" (/usr/sbin/nginx)`: how a process is named in messages (no arguments, no environment). */
function describe(p: ContainerProcess): string {
  const path = p.argv0 || p.exe || '';
  return `pid ${p.pid} "${p.comm}"${path !== '' && path !== p.comm ? ` (${path})` : ''}`;
}

const NAMESPACE_HINT = 'set `shareProcessNamespace: true` in the pod spec (`secrets-agent inject` does when the config has a restart notify)';

/** The one container main process that `target.process` names, or why there is none. */
export async function findAppProcess(wanted: string): Promise<{ process: ContainerProcess } | { reason: string }> {
  let all: ContainerProcess[];
  try {
    all = await listProcesses();
  } catch (err) {
    return { reason: `cannot list processes in ${PROC}: ${errorCode(err) ?? String(err)}` };
  }
  const own = ownContainerMain(all);
  const mains = all.filter((p) => p.ppid === 0 && p.pid !== 1 && p.pid !== own);
  const matches = mains.filter((p) => processMatches(p, wanted));
  if (matches.length === 1) return { process: matches[0]! };
  if (mains.length === 0 && own === 1) {
    return { reason: `no container main process is visible besides the agent's own: the agent's container is pid 1 of its process namespace, so the pod does not share one; ${NAMESPACE_HINT}` };
  }
  if (mains.length === 0) {
    return { reason: `no container main process is running besides the agent's own: the app's container is not running now (restarting, or not started yet)` };
  }
  const seen = mains.map(describe).join(', ');
  if (matches.length === 0) {
    return { reason: `no container main process matches "${wanted}" (the container main processes seen: ${seen}); set restart.process to the app's (a name or an absolute path)` };
  }
  return {
    reason: `${matches.length} container main processes match "${wanted}" (${matches.map(describe).join(', ')}), and the agent restarts exactly one; set restart.process to the absolute path of the app's executable or argv[0]`,
  };
}

/**
 * At start-up (`run`): one warning per restart target when the pod plainly does not share its
 * process namespace (the agent's own container's main process is pid 1), so that the
 * misconfiguration shows before the first rotation instead of at it. The app itself is not
 * looked for: a native sidecar starts before it.
 */
export async function warnUnsharedNamespace(targets: readonly NotifyTarget[], log: Logger): Promise<void> {
  const restarts = targets.filter((t) => t.kind === 'restart');
  if (restarts.length === 0) return;
  let all: ContainerProcess[];
  try {
    all = await listProcesses();
  } catch {
    return; // runRestart reports it, with the reason, when it is due
  }
  if (ownContainerMain(all) !== 1) return;
  for (const t of restarts) {
    log.warn({ target: t.name }, `restart notify "${t.name}" cannot work in this pod: the agent's container is pid 1 of its process namespace, so the pod does not share one and the app's process is invisible to the agent; ${NAMESPACE_HINT}`);
  }
}

/** Is this very process (pid and start time) still there, and not a zombie? */
async function alive(p: ContainerProcess): Promise<boolean> {
  const now = await readProcess(p.pid);
  return now !== undefined && now.startTime === p.startTime;
}

/** Resolves true when `p` is gone, false when `ms` passed first or `signal` was aborted. */
async function waitGone(p: ContainerProcess, ms: number, signal: AbortSignal): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (!(await alive(p))) return true;
    if (signal.aborted || performance.now() >= deadline) return false;
    try {
      await sleep(Math.min(POLL_MS, Math.max(1, deadline - performance.now())), undefined, { signal, ref: false });
    } catch {
      return false;
    }
  }
}

export async function runRestart(target: RestartTarget, ctx: RunContext): Promise<Outcome> {
  const found = await findAppProcess(target.process);
  if ('reason' in found) return { result: 'failure', reason: `${found.reason}; the app keeps its old environment until its container restarts` };
  const p = found.process;
  const who = describe(p);
  const details = { pid: p.pid, signal: target.signal };
  const started = performance.now();
  const err = trySignal(p.pid, target.signal);
  if (err === 'ESRCH') return { result: 'failure', reason: `${who} exited before it could be signalled (ESRCH)`, details: { ...details, code: err } };
  if (err !== undefined) return { result: 'failure', reason: signalError(err, p.pid, p.comm), details: { ...details, code: err } };

  const after = (): string => formatDuration(Math.round(performance.now() - started));
  if (await waitGone(p, target.graceMs, ctx.signal)) {
    return { result: 'success', reason: `restarted the app's container: sent ${target.signal} to ${who}, which exited after ${after()}; the kubelet starts the container again`, details: { ...details, exitedAfterMs: Math.round(performance.now() - started) } };
  }
  if (ctx.signal.aborted) {
    return { result: 'success', reason: `sent ${target.signal} to ${who}; the agent is stopping and does not wait for it to exit`, details };
  }
  const killErr = trySignal(p.pid, 'SIGKILL');
  if (killErr !== undefined && killErr !== 'ESRCH') return { result: 'failure', reason: `${who} did not exit within ${formatDuration(target.graceMs)} of ${target.signal}, and SIGKILL failed: ${signalError(killErr, p.pid, p.comm)}`, details: { ...details, code: killErr } };
  if (await waitGone(p, AFTER_KILL_MS, ctx.signal)) {
    return {
      result: 'success',
      reason: `restarted the app's container: sent ${target.signal} to ${who}, which had not exited after ${formatDuration(target.graceMs)} (restart.grace), so it got SIGKILL and exited after ${after()}; the kubelet starts the container again`,
      details: { ...details, killed: true, exitedAfterMs: Math.round(performance.now() - started) },
    };
  }
  if (ctx.signal.aborted) return { result: 'success', reason: `sent ${target.signal}, then SIGKILL, to ${who}; the agent is stopping and does not wait for it to exit`, details: { ...details, killed: true } };
  return { result: 'failure', reason: `${who} is still there ${formatDuration(AFTER_KILL_MS)} after SIGKILL (stuck in the kernel, state D?); the app's container has not restarted`, details: { ...details, killed: true } };
}
