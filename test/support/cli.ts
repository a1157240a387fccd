// Run the real CLI (node agent/main.ts, or the bundle) as a child process.
//
// Agents run `detached` (in their own session and process group) and with a tree
// tag in their environment, so that the teardown (stopAgent in procs.ts) can reach
// the agent and everything it started, even after the agent itself exited.
// A test stops every agent it starts with stopAgent/killAgent before removing
// its temp dirs.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAgent, taggedEnv, tagTree } from './procs.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = fileURLToPath(new URL('../../agent/main.ts', import.meta.url));

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill with SIGKILL after this long. @default 60000 */
  timeoutMs?: number;
  /** Entry point; default the source (agent/main.ts). */
  entry?: string;
  /** Node flags before the entry point (e.g. the Dockerfile ENTRYPOINT's). */
  nodeFlags?: readonly string[];
  /** A command that runs node (e.g. `nsenter -t <pid> -p -m --`): the child is then this command, not node. */
  wrapper?: readonly string[];
}

function spawnAgent(args: readonly string[], options: RunOptions) {
  const { env, tag } = taggedEnv(options.env ?? process.env);
  const node = [process.execPath, ...(options.nodeFlags ?? []), options.entry ?? MAIN, ...args];
  const [file, ...rest] = [...(options.wrapper ?? []), ...node] as [string, ...string[]];
  const child = spawn(file, rest, {
    cwd: options.cwd ?? REPO,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  tagTree(child, tag);
  return child;
}

export function runAgent(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnAgent(args, options);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => void killAgent(child), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Start a long-running agent (run); the caller stops it. Output is collected as it comes. */
export interface RunningAgent {
  child: ChildProcess;
  output(): { stdout: string; stderr: string };
  /** Resolve when stderr+stdout matches, or reject after timeoutMs. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startAgent(args: readonly string[], options: RunOptions = {}): RunningAgent {
  const child = spawnAgent(args, options);
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  const poke = () => waiters.forEach((w) => w());
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    poke();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    poke();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
      poke();
    }),
  );
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(stdout + stderr)) {
            cleanup();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`agent exited (${child.exitCode ?? child.signalCode}) before ${re}:\n${stderr.slice(-3000)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${re}:\n${stderr.slice(-3000)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/** The base URL of a running agent's server (`server.listen: "127.0.0.1:0"`), from its start-up log line. */
export async function serverUrl(agent: RunningAgent, timeoutMs = 20_000): Promise<string> {
  const msg = 'serving /metrics, /healthz, /readyz';
  // At debug level the server logs its own line with the same msg (and `listen`) first:
  // wait for the wiring's line, the one that carries `address`.
  await agent.waitFor(/^(?=.*"address":")(?=.*"msg":"serving \/metrics).*$/m, timeoutMs);
  for (const line of agent.output().stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const rec = JSON.parse(line) as { msg?: string; address?: string };
    if (rec.msg === msg && rec.address) return `http://${rec.address}`;
  }
  throw new Error('no server address in the agent log');
}

/**
 * A directory holding `secrets-agent`, the installed name every command of the
 * docs uses (`npm install --global secrets-agent`), for a test that runs those
 * commands as written: put it first on PATH. It stands in for the installed
 * package with this checkout's source, run by this test's Node (the same code;
 * test/artifacts/npm-package.test.ts installs and runs the real package).
 * Removed by the caller (the directory is its own temp dir).
 */
export async function installedNameDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-bin-'));
  const shim = join(dir, 'secrets-agent');
  await writeFile(shim, `#!/bin/sh\n# Stand-in for the installed secrets-agent (test/support/cli.ts, installedNameDir).\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN)} "$@"\n`, { mode: 0o755 });
  return dir;
}
