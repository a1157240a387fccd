// `signal` targets: send a signal to the app's process, found by name or pid file.
//
// The agent runs in its own container; it sees the app's processes only when the
// pod sets `shareProcessNamespace: true`, and may signal them only with the same
// UID or CAP_KILL. Every failure message says which of the two is missing.
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { NotifyTarget } from '../types.ts';
import { errorCode, type Outcome } from './outcome.ts';

type SignalTarget = Extract<NotifyTarget, { kind: 'signal' }>;

const PROC = '/proc';

export interface ProcessInfo {
  readonly pid: number;
  /** `/proc/<pid>/comm` (the kernel truncates it to 15 bytes). */
  readonly comm: string;
  /** Basename of argv[0] from `/proc/<pid>/cmdline`; '' when unreadable or empty. */
  readonly argv0: string;
}

/**
 * Every live process, other than the agent itself, whose comm or argv[0]
 * basename equals `name`. Zombies are left out: they are already dead and
 * signalling one would report a success that reached nobody.
 */
export async function findProcesses(name: string): Promise<ProcessInfo[]> {
  const entries = await readdir(PROC);
  const found = await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
      .map((e) => readProcess(Number(e))),
  );
  return found.filter((p): p is ProcessInfo => p !== undefined && (p.comm === name || p.argv0 === name));
}

/** undefined when the process is gone, a zombie, or hidden from us. */
async function readProcess(pid: number): Promise<ProcessInfo | undefined> {
  const dir = `${PROC}/${pid}`;
  try {
    const [comm, cmdline, stat] = await Promise.all([
      readFile(`${dir}/comm`, 'utf8'),
      readFile(`${dir}/cmdline`, 'utf8').catch(() => ''),
      readFile(`${dir}/stat`, 'utf8'),
    ]);
    // stat is `pid (comm) S ...`; comm may itself contain ')' so take the last one.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return undefined;
    const arg0 = cmdline.split('\0', 1)[0] ?? '';
    return { pid, comm: comm.replace(/\n$/, ''), argv0: arg0 ? basename(arg0) : '' };
  } catch {
    // Exited between readdir and read (ENOENT/ESRCH), or hidepid: not a candidate.
    return undefined;
  }
}

/** The comm of one pid, for messages; undefined if it cannot be read. */
async function commOf(pid: number): Promise<string | undefined> {
  try {
    return (await readFile(`${PROC}/${pid}/comm`, 'utf8')).replace(/\n$/, '');
  } catch {
    return undefined;
  }
}

const NAMESPACE_HINT =
  'set `shareProcessNamespace: true` in the pod spec (the agent sees only its own container\'s processes otherwise)';

/** Send `target.signal` to the pid in `pidFile` (preferred when both are set) or to every process named `process`. */
export async function runSignal(target: SignalTarget): Promise<Outcome> {
  if (target.pidFile !== undefined) return signalPidFile(target, target.pidFile);
  if (target.process !== undefined) return signalByName(target, target.process);
  // The config schema requires one of the two; this guards hand-built targets.
  return { result: 'failure', reason: 'signal target has neither `process` nor `pidFile`' };
}

async function signalByName(target: SignalTarget, name: string): Promise<Outcome> {
  let procs: ProcessInfo[];
  try {
    procs = await findProcesses(name);
  } catch (err) {
    return { result: 'failure', reason: `cannot list processes in ${PROC}: ${errorCode(err) ?? String(err)}` };
  }
  if (procs.length === 0) {
    return { result: 'failure', reason: `no process named "${name}" is visible; ${NAMESPACE_HINT}` };
  }

  const sent: number[] = [];
  const gone: number[] = [];
  for (const p of procs) {
    const err = trySignal(p.pid, target.signal);
    if (err === undefined) sent.push(p.pid);
    else if (err === 'ESRCH') gone.push(p.pid);
    else return { result: 'failure', reason: signalError(err, p.pid, name), details: { pid: p.pid, code: err, signalled: sent } };
  }
  if (sent.length === 0) {
    // Every match exited between the scan and the kill: nobody got the signal.
    return {
      result: 'failure',
      reason: `process "${name}" (pid ${gone.join(', ')}) exited before it could be signalled (ESRCH)`,
      details: { pids: gone, code: 'ESRCH' },
    };
  }
  const who = sent.length === 1 ? `pid ${sent[0]}` : `${sent.length} processes (pids ${sent.join(', ')})`;
  return { result: 'success', reason: `sent ${target.signal} to ${who} named "${name}"`, details: { pids: sent, ...(gone.length ? { exited: gone } : {}) } };
}

async function signalPidFile(target: SignalTarget, pidFile: string): Promise<Outcome> {
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (err) {
    return { result: 'failure', reason: `cannot read pid file ${pidFile}: ${errorCode(err) ?? String(err)}` };
  }
  const trimmed = text.trim();
  // Strict: kill(0) signals our own process group and kill(-1) every process we may signal.
  // The content is not quoted: a misconfigured pidFile could point at a secret.
  if (trimmed === '') return { result: 'failure', reason: `pid file ${pidFile} is empty` };
  if (!/^\d{1,10}$/.test(trimmed) || Number(trimmed) < 1) {
    return { result: 'failure', reason: `pid file ${pidFile} does not hold a process id (expected one positive decimal integer)` };
  }
  const pid = Number(trimmed);
  if (pid === process.pid) {
    return {
      result: 'failure',
      reason: `pid file ${pidFile} names the agent's own pid ${pid}; the app's pid is only meaningful here when the pod shares one process namespace: ${NAMESPACE_HINT}`,
      details: { pid },
    };
  }
  const label = (await commOf(pid)) ?? pidFile;
  const err = trySignal(pid, target.signal);
  if (err === undefined) return { result: 'success', reason: `sent ${target.signal} to pid ${pid} ("${label}") from ${pidFile}`, details: { pids: [pid] } };
  if (err === 'ESRCH') {
    return {
      result: 'failure',
      reason: `pid ${pid} from pid file ${pidFile} is not running (ESRCH): the pid file is stale, or the app is in another PID namespace (${NAMESPACE_HINT})`,
      details: { pid, code: err },
    };
  }
  return { result: 'failure', reason: signalError(err, pid, label), details: { pid, code: err } };
}

/** undefined on success, else the error code. */
export function trySignal(pid: number, signal: NodeJS.Signals): string | undefined {
  try {
    process.kill(pid, signal);
    return undefined;
  } catch (err) {
    return errorCode(err) ?? String(err);
  }
}

export function signalError(code: string, pid: number, name: string): string {
  if (code === 'EPERM') {
    return `not permitted to signal pid ${pid} ("${name}"): run the agent with the same UID as the app (securityContext.runAsUser); CAP_KILL only helps an agent running as root, since Kubernetes does not make added capabilities effective for non-root users`;
  }
  return `cannot signal pid ${pid} ("${name}"): ${code}`;
}
