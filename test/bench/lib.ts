// Bench helpers: processes, /proc readings, statistics, tables.
//
// Everything is read from the outside, as an operator would see it: CPU time
// and memory from /proc/<pid>, API calls at the proxy in front of moto, files
// on disk. The agent is never instrumented.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO } from '../support/cli.ts';

export { REPO };

// --- /proc ------------------------------------------------------------------

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/**
 * CPU seconds (user + system) the process has used so far, dead threads included
 * (/proc/<pid>/stat utime + stime; clock-tick resolution, 10 ms).
 */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
}

/**
 * CPU seconds of the live threads at nanosecond resolution (sum of
 * /proc/<pid>/task/<tid>/schedstat): for short windows where ticks are too coarse.
 */
export function cpuSecondsFine(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread exited meanwhile
    }
  }
  return ns / 1e9;
}

export interface Memory {
  /** Resident set size now (VmRSS), MB. */
  rssMB: number;
  /** Peak resident set size (VmHWM), MB. */
  hwmMB: number;
  /** Anonymous resident memory (heaps, stacks), MB. */
  anonMB: number;
  /** File-backed resident memory (mostly the node binary's own pages), MB. */
  fileMB: number;
  /**
   * Proportional set size (/proc/<pid>/smaps_rollup Pss), MB: private pages in
   * full, each shared page divided by the processes mapping it. What a node's
   * memory accounting would charge this process.
   */
  pssMB: number;
}

function statusFields(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

export function memory(pid: number): Memory {
  const f = statusFields(pid);
  const mb = (key: string): number => round(Number.parseInt(f.get(key) ?? '0', 10) / 1024, 1);
  return { rssMB: mb('VmRSS'), hwmMB: mb('VmHWM'), anonMB: mb('RssAnon'), fileMB: mb('RssFile'), pssMB: pss(pid) };
}

/** Pss from /proc/<pid>/smaps_rollup, MB (NaN where the kernel has no smaps_rollup). */
function pss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? round(Number(m[1]) / 1024, 1) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Times the main (event-loop) thread went to sleep voluntarily: its wakeups. */
export function wakeups(pid: number): number {
  return Number(statusFields(pid).get('voluntary_ctxt_switches') ?? 0);
}

// --- statistics ---------------------------------------------------------------

export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Percentile by linear interpolation between closest ranks (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (rank - lo);
}

export const median = (values: readonly number[]): number => percentile(values, 50);

// --- processes ----------------------------------------------------------------

export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  /** When the process was spawned (Date.now()). */
  readonly startedAt: number;
  /** The last 16 kB of stderr + stdout, for error messages. */
  tail(): string;
  /** Resolve with the time (Date.now()) the first output line matching `re` arrived. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<number>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<Proc>();

/** Stop every process started here that is still running (on error paths). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(2000)));
}

/**
 * Spawn a process, watching its output line by line. `test/support/cli.ts`
 * cannot pass node flags (the V8 flags are what the memory case varies), hence this.
 */
export function start(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const startedAt = Date.now();
  const child = spawn(command, args, { cwd: options.cwd ?? REPO, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  let partial = '';
  const waiters = new Set<{ re: RegExp; resolve: (at: number) => void }>();
  const onData = (d: Buffer): void => {
    const text = d.toString();
    tail = (tail + text).slice(-16_384);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    const at = Date.now();
    for (const line of lines) {
      for (const w of waiters) {
        if (w.re.test(line)) {
          waiters.delete(w);
          w.resolve(at);
        }
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', () => resolve({ code: -1, signal: null }));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const proc: Proc = {
    child,
    pid: child.pid ?? -1,
    startedAt,
    tail: () => tail + partial,
    waitFor(re, timeoutMs = 60_000) {
      return new Promise<number>((resolve, reject) => {
        const w = { re, resolve: (at: number) => (clearTimeout(timer), resolve(at)) };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${command} ${args.join(' ')}:\n${proc.tail().slice(-3000)}`));
        }, timeoutMs);
        waiters.add(w);
        void exited.then(({ code, signal }) => {
          if (!waiters.has(w)) return;
          waiters.delete(w);
          clearTimeout(timer);
          reject(new Error(`${command} ${args.join(' ')} exited (${code ?? signal}) before ${re}:\n${proc.tail().slice(-3000)}`));
        });
      });
    },
    exited,
    async stop(graceMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      live.delete(proc);
    },
  };
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}

/** Run to completion; reject on a non-zero exit with the output's tail. */
export async function runToEnd(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<number> {
  const p = start(command, args, options);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const { code, signal } = await p.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code ?? signal}):\n${p.tail().slice(-3000)}`);
  return Date.now() - p.startedAt;
}

/** Poll until `cond` holds; returns the time it held (Date.now()). */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 5): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return Date.now();
    await sleep(stepMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// --- tables -------------------------------------------------------------------

export type Cell = string | number | undefined;

export function fmt(v: Cell, digits = 1): string {
  if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) return '–';
  if (typeof v === 'string') return v;
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A Markdown table (GitHub flavour), numeric columns right-aligned. */
export function table(headers: readonly string[], rows: readonly (readonly Cell[])[], digits = 1): string {
  const cells = rows.map((r) => r.map((c) => fmt(c, digits)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || r[i] === undefined));
  const width = headers.map((h, i) => Math.max(h.length, 3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    '| ' + r.map((c, i) => (numeric[i] ? c.padStart(width[i] ?? 0) : c.padEnd(width[i] ?? 0))).join(' | ') + ' |';
  const sep = '|' + width.map((w, i) => (numeric[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|';
  return [line(headers), sep, ...cells.map(line)].join('\n');
}
