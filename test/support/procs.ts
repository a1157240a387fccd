// Stopping what a test started, and everything it started in turn (test support).
//
// Contract: `stopProcess(child)` returns only when the child AND every process of
// its tree are gone, so a test may remove its temp dirs right after. It sends the
// first signal (SIGTERM by default), waits up to `graceMs` for the child to exit,
// then SIGKILLs the child's process group (children spawned `detached` lead their
// own) and every descendant, and waits until none remains (zombies count as gone).
//
// Descendants are found through /proc (Linux): the `ppid` tree, plus every
// process in the group or session of a process of the tree (the agent's exec
// targets run `detached`, i.e. in their own session: after the agent dies they
// are re-parented to init and only their group still names them). The tree is
// sampled before the first signal and every POLL_MS while waiting, so a child
// the agent starts during shutdown is caught too. Each process is identified by
// pid AND start time: a recycled pid is never signalled.
//
// Children started through cli.ts also carry a tag in their environment
// (TREE_ENV=<random>), which exec targets and their children inherit: a process
// holding the tag belongs to the tree even after its parent died and its pid
// ancestry is lost, so an agent that already exited can still be cleaned up.
//
// `survivors` in the result lists the processes of the tree still alive when
// the child exited (after a short settle): "no process outlives the agent".
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 25;

export interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  state: string;
  /** Start time in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  start: string;
  comm: string;
}

/** One process from /proc, or undefined when it is gone. */
export function procInfo(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm is in parentheses and may contain spaces or ')': split after the last ')'.
  const close = stat.lastIndexOf(')');
  const comm = stat.slice(stat.indexOf('(') + 1, close);
  const f = stat.slice(close + 2).split(' ');
  // f[0] = state (field 3), f[1] = ppid, f[2] = pgrp, f[3] = session, f[19] = starttime (field 22).
  return { pid, state: f[0] ?? '?', ppid: Number(f[1]), pgid: Number(f[2]), sid: Number(f[3]), start: f[19] ?? '', comm };
}

/** Every live process (zombies excluded). */
export function allProcs(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = procInfo(Number(name));
    if (p && p.state !== 'Z' && p.state !== 'X') out.push(p);
  }
  return out;
}

const key = (p: ProcInfo) => `${p.pid}:${p.start}`;

/** The environment variable that tags a process tree started by a test. */
export const TREE_ENV = 'SECRETS_AGENT_TEST_TREE';
const tags = new WeakMap<ChildProcess, string>();

/** `env` plus a fresh tree tag; pass the tag to tagTree() once the child is spawned. */
export function taggedEnv(env: NodeJS.ProcessEnv): { env: NodeJS.ProcessEnv; tag: string } {
  const tag = randomUUID();
  return { env: { ...env, [TREE_ENV]: tag }, tag };
}

export function tagTree(child: ChildProcess, tag: string): void {
  tags.set(child, tag);
}

/** Live processes whose environment carries the tree tag. */
function withTag(procs: readonly ProcInfo[], tag: string): ProcInfo[] {
  const needle = `${TREE_ENV}=${tag}\0`;
  return procs.filter((p) => {
    try {
      return readFileSync(`/proc/${p.pid}/environ`, 'latin1').includes(needle);
    } catch {
      return false;
    }
  });
}

/**
 * Grows `known` with every process that descends from a known one, or that
 * shares the group or session of a known one whose group/session it leads
 * (never the test runner's own group: non-detached children share it).
 */
export function collectTree(known: Map<string, ProcInfo>, roots: readonly number[] = [], tag?: string): void {
  const procs = allProcs();
  const ours = new Set([process.pid, process.ppid]);
  const mine = procInfo(process.pid);
  for (const pid of roots) {
    const p = procs.find((q) => q.pid === pid);
    if (p) known.set(key(p), p);
  }
  if (tag !== undefined) for (const p of withTag(procs, tag)) if (!ours.has(p.pid)) known.set(key(p), p);
  for (let grew = true; grew; ) {
    grew = false;
    const pids = new Set([...known.values()].map((p) => p.pid));
    // Groups and sessions led by a known process (a leader's pgid/sid is its pid).
    const groups = new Set([...known.values()].filter((p) => p.pgid === p.pid).map((p) => p.pid));
    const sessions = new Set([...known.values()].filter((p) => p.sid === p.pid).map((p) => p.pid));
    for (const p of procs) {
      if (known.has(key(p)) || ours.has(p.pid)) continue;
      if (mine && (p.pgid === mine.pgid || p.sid === mine.sid) && !pids.has(p.ppid)) continue;
      if (pids.has(p.ppid) || groups.has(p.pgid) || sessions.has(p.sid)) {
        known.set(key(p), p);
        grew = true;
      }
    }
  }
}

/** The known processes still alive (same pid and start time, not a zombie). */
export function alive(known: Map<string, ProcInfo>): ProcInfo[] {
  return [...known.values()].filter((p) => {
    const now = procInfo(p.pid);
    return now !== undefined && now.start === p.start && now.state !== 'Z' && now.state !== 'X';
  });
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

/** Something `stopProcess` can stop: a ChildProcess or a RunningAgent (cli.ts). */
export type Stoppable = ChildProcess | { child: ChildProcess };

export interface StopResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Processes of the tree alive when the child exited (plus settleMs): they outlived it. */
  survivors: ProcInfo[];
}

export interface StopOptions {
  /** The first signal. @default 'SIGTERM' */
  signal?: NodeJS.Signals;
  /** How long to wait for the child to exit after the first signal, before SIGKILL. @default 10000 */
  graceMs?: number;
  /** After the child exited, how long its tree may take to go before it counts as survivors. @default 1000 */
  settleMs?: number;
  /** Give up (throw) when the tree is still alive this long after SIGKILL. @default 10000 */
  killTimeoutMs?: number;
}

const childOf = (s: Stoppable): ChildProcess => ('child' in s ? s.child : s);

function exitedOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, signal: sig })));
}

/**
 * Stops a child and its whole tree and waits until all of it is gone (see the
 * module comment). Safe to call on a child that already exited, and twice.
 */
export async function stopProcess(s: Stoppable | undefined, options: StopOptions = {}): Promise<StopResult> {
  if (!s) return { code: null, signal: null, survivors: [] };
  const child = childOf(s);
  const known = new Map<string, ProcInfo>();
  const pid = child.pid;
  const tag = tags.get(child);
  const running = pid !== undefined && child.exitCode === null && child.signalCode === null;
  if (!running) {
    // Its pid may belong to another process by now: only the tag can find what it left.
    if (tag !== undefined) collectTree(known, [], tag);
    const survivors = alive(known);
    await killTree(known, options.killTimeoutMs, tag);
    return { code: child.exitCode, signal: child.signalCode, survivors };
  }
  const exited = exitedOf(child);
  let done = false;
  void exited.then(() => (done = true));
  collectTree(known, [pid], tag);
  signal(pid, options.signal ?? 'SIGTERM');
  const graceEnd = Date.now() + (options.graceMs ?? 10_000);
  while (!done && Date.now() < graceEnd) {
    collectTree(known, [], tag);
    await sleep(POLL_MS);
  }
  if (!done) {
    collectTree(known, [], tag);
    signal(-pid, 'SIGKILL');
    signal(pid, 'SIGKILL');
  }
  const result = await exited;
  // The tree may take a moment to follow (the agent's own shutdown kills its children).
  const settleEnd = Date.now() + (options.settleMs ?? 1000);
  for (;;) {
    collectTree(known, [], tag);
    if (alive(known).length === 0 || Date.now() >= settleEnd) break;
    await sleep(POLL_MS);
  }
  const survivors = alive(known);
  await killTree(known, options.killTimeoutMs, tag);
  return { ...result, survivors };
}

/** SIGKILL every live process of `known` (and their groups) until none remains. */
export async function killTree(known: Map<string, ProcInfo>, timeoutMs = 10_000, tag?: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    collectTree(known, [], tag);
    const left = alive(known);
    if (left.length === 0) return;
    const mine = procInfo(process.pid);
    for (const p of left) {
      if (p.pgid === p.pid && p.pgid !== mine?.pgid) signal(-p.pgid, 'SIGKILL');
      signal(p.pid, 'SIGKILL');
    }
    if (Date.now() > end) throw new Error(`processes still alive ${timeoutMs} ms after SIGKILL: ${left.map((p) => `${p.pid} (${p.comm})`).join(', ')}`);
    await sleep(POLL_MS);
  }
}

/** The shared teardown: SIGTERM, a bounded wait, then SIGKILL of the whole tree; returns when all is gone. */
export function stopAgent(agent: Stoppable | undefined, options: StopOptions = {}): Promise<StopResult> {
  return stopProcess(agent, options);
}

/** kill -9 of the agent, then of whatever it left behind (as a container runtime kills the cgroup); returns when all is gone. */
export function killAgent(agent: Stoppable | undefined): Promise<StopResult> {
  return stopProcess(agent, { signal: 'SIGKILL', graceMs: 5000, settleMs: 0 });
}

/** stopAgent on every one, concurrently. */
export async function stopAll(agents: Iterable<Stoppable | undefined>, options: StopOptions = {}): Promise<void> {
  await Promise.all([...agents].map((a) => stopProcess(a, options)));
}
