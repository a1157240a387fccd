// Shared support for the chaos suites (test/chaos/*.test.ts): real agent
// processes, real files, real HTTP; helpers to wait, to read the volume and
// /proc, and a collector that proves no secret value ever left the agent.
//
// Every secret the chaos suites create carries CANARY. A suite hands every
// agent it starts and every endpoint body it reads to its Leaks collector and
// ends with `leaks.assertClean()`: the canary must appear nowhere.
import assert from 'node:assert/strict';
import { readdir, readFile, readlink, lstat } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { runAgent, serverUrl, startAgent, type RunOptions, type RunResult, type RunningAgent } from './cli.ts';

/** Inside every secret value of every chaos suite; must never appear in any output. */
export const CANARY = 'CANARY-chaos-5e1f0a7d';

/** Collects every text the agent produced or served, then proves the canary is in none of them. */
export class Leaks {
  readonly #texts: { label: string; text: string | (() => string) }[] = [];
  /** Number of texts scanned by the last assertClean(). */
  scanned = 0;
  bytes = 0;

  add(label: string, text: string | (() => string)): void {
    this.#texts.push({ label, text });
  }

  /** An agent's stdout and stderr, read when scanned (so output arriving later counts too). */
  watch(label: string, agent: RunningAgent): void {
    this.add(`${label} stdout`, () => agent.output().stdout);
    this.add(`${label} stderr`, () => agent.output().stderr);
  }

  result(label: string, r: RunResult): void {
    this.add(`${label} stdout`, r.stdout);
    this.add(`${label} stderr`, r.stderr);
  }

  /**
   * Texts (labels) that contain the canary, a part of it long enough to be
   * telling (V8's JSON.parse errors quote only a few characters around the bad
   * token), or a base64 or hex rendering of it.
   */
  findings(canary = CANARY): string[] {
    const needles = [canary, canary.slice(0, 12), canary.slice(-8), Buffer.from(canary).toString('base64').slice(0, 16), Buffer.from(canary).toString('hex')];
    const hits: string[] = [];
    this.scanned = 0;
    this.bytes = 0;
    for (const { label, text } of this.#texts) {
      const t = typeof text === 'string' ? text : text();
      this.scanned++;
      this.bytes += t.length;
      for (const n of needles) {
        const i = t.indexOf(n);
        // The label and position only: printing the context would print the secret.
        if (i >= 0) {
          hits.push(`${label} (at offset ${i})`);
          break;
        }
      }
    }
    return hits;
  }

  assertClean(suite: string): void {
    const hits = this.findings();
    process.stdout.write(`# ${suite}: leak scan of ${this.scanned} outputs (${Math.round(this.bytes / 1024)} KiB): ${hits.length} canary hits\n`);
    assert.ok(this.scanned > 0, 'nothing was collected to scan');
    assert.deepEqual(hits, [], 'a secret value (the canary) appeared in agent output or an endpoint');
  }
}

/** The environment for an agent child without any AWS or test-runner variables of the host. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && k !== 'NODE_OPTIONS' && !k.startsWith('NODE_TEST') && k !== 'LOG_LEVEL' && k !== 'SECRETS_AGENT_CONFIG') env[k] = v;
  }
  return { ...env, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true', ...extra };
}

/** Starts `run` (or any long-running command) and registers its output with `leaks`. */
export function chaosAgent(label: string, args: readonly string[], leaks: Leaks, options: RunOptions = {}): RunningAgent {
  const agent = startAgent(args, options);
  leaks.watch(label, agent);
  return agent;
}

/** Runs a command to completion and registers its output with `leaks`. */
export async function chaosRun(label: string, args: readonly string[], leaks: Leaks, options: RunOptions = {}): Promise<RunResult> {
  const r = await runAgent(args, options);
  leaks.result(label, r);
  return r;
}

export { readOr, waitUntil } from './wait.ts';

/** The base URL of the agent's /metrics server (config `server.listen: "127.0.0.1:0"`). */
export function listenAddress(agent: RunningAgent, timeoutMs = 20_000): Promise<string> {
  return serverUrl(agent, timeoutMs);
}

/** GET an agent endpoint; the body goes to the leak collector. Never throws: status 0 = no answer. */
export async function get(url: string, leaks: Leaks, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.text();
    leaks.add(`GET ${url}`, body);
    return { status: res.status, body };
  } catch (e) {
    return { status: 0, body: String((e as Error).cause ?? e) };
  }
}

/** The value of one Prometheus sample (summing every series that matches the label filter). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** True when the text carries a JavaScript stack trace ("    at fn (file:line:col)"). */
export function hasStackTrace(text: string): boolean {
  return /(?:^|\n|\\n)\s+at \S[^\n]*:\d+:\d+/.test(text);
}

export interface ProcStats {
  rssKb: number;
  fds: number;
}

/** VmRSS and the number of open descriptors of a live process (Linux /proc). */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /VmRSS:\s+(\d+) kB/.exec(status);
  return { rssKb: rss ? Number(rss[1]) : NaN, fds: readdirSync(`/proc/${pid}/fd`).length };
}

// ---- the volume ----

/** Mounts a tmpfs of `size` (e.g. "1m") on `dir`; false when not permitted (not root, no CAP_SYS_ADMIN). */
export function mountTmpfs(dir: string, size: string): boolean {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status === 0) return true;
  mountError = (r.stderr || r.error?.message || `exit ${r.status}`).trim();
  return false;
}

/** Why the last mountTmpfs() failed. */
export let mountError = '';

export async function unmount(dir: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if (spawnSync('umount', [dir]).status === 0) return;
    await sleep(100);
  }
  spawnSync('umount', ['-l', dir]);
}

export const GENERATION_RE = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$/;

export interface VolumeState {
  /** Where ..data points (undefined: no ..data). */
  data: string | undefined;
  /** Generation-shaped directories present. */
  generations: string[];
  /** Every name starting with "..". */
  reserved: string[];
  /** Files of the live generation (relative path -> content), read through ..data's target. */
  files: Map<string, string>;
}

/** The names starting with ".." in outDir (safe to call while an agent writes). */
export async function reservedNames(outDir: string): Promise<string[]> {
  const names = await readdir(outDir).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith('..')).sort();
}

/** The whole volume; only meaningful while no agent writes to it. */
export async function volume(outDir: string): Promise<VolumeState> {
  const reserved = await reservedNames(outDir);
  const generations = reserved.filter((n) => GENERATION_RE.test(n));
  let data: string | undefined;
  try {
    data = await readlink(join(outDir, '..data'));
  } catch {
    data = undefined;
  }
  const files = new Map<string, string>();
  if (data !== undefined) {
    const walk = async (dir: string, prefix: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(dir, e.name), `${prefix}${e.name}/`);
        else files.set(`${prefix}${e.name}`, await readFile(join(dir, e.name), 'utf8'));
      }
    };
    await walk(join(outDir, data), '');
  }
  return { data, generations, reserved, files };
}

/** lstat-based snapshot of one path: kind, size, mtime, inode and (for files) bytes. */
export async function fingerprint(path: string): Promise<string> {
  const st = await lstat(path);
  const bytes = st.isFile() ? (await readFile(path)).toString('base64') : st.isSymbolicLink() ? `-> ${await readlink(path)}` : '';
  return JSON.stringify({ mode: st.mode, size: st.size, mtimeNs: String(st.mtimeMs), ino: st.ino, bytes });
}

/** Milliseconds per request over a window, as requests/s with one decimal. */
export function rate(count: number, ms: number): number {
  return Math.round((count / (ms / 1000)) * 10) / 10;
}

// ---- the V8 inspector: a full GC and the heap size after it ----

/** Reads the inspector's ws:// URL from an agent started with NODE_OPTIONS=--inspect=127.0.0.1:0. */
/** Node flags and environment that load test/support/heap-probe.mjs into the agent, writing to `file`. */
export function heapProbe(file: string): { file: string; nodeFlags: string[]; env: Record<string, string> } {
  return { file, nodeFlags: ['--expose-gc', '--import', fileURLToPath(new URL('./heap-probe.mjs', import.meta.url))], env: { HEAP_PROBE_FILE: file } };
}

/**
 * Node flags and environment that load test/support/clock-shift.mjs into the
 * agent: writing a number of ms to `file` steps the agent's wall clock (Date)
 * by that much, its monotonic clocks untouched.
 */
export function clockShift(file: string): { file: string; nodeFlags: string[]; env: Record<string, string> } {
  return { file, nodeFlags: ['--import', fileURLToPath(new URL('./clock-shift.mjs', import.meta.url))], env: { CLOCK_SHIFT_FILE: file } };
}

/**
 * The V8 heap in use right after a full garbage collection in the agent, in bytes:
 * the next sample the heap probe writes after this call (at most ~1 s later).
 */
export async function heapAfterGc(file: string, timeoutMs = 10_000): Promise<number> {
  const read = async (): Promise<{ n: number; usedSize: number } | undefined> => {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as { n: number; usedSize: number };
    } catch {
      return undefined;
    }
  };
  const before = (await read())?.n ?? 0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await read();
    if (s && s.n > before) return s.usedSize;
    if (Date.now() > deadline) throw new Error(`the heap probe wrote no sample to ${file} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
