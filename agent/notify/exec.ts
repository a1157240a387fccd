// `exec` targets: run the user's command (argv, no shell) and wait for it.
//
// The command runs in its own process group so that a timeout or stop() also
// reaches whatever it started (`sh -c "a; b"`): SIGTERM to the group, SIGKILL
// after KILL_GRACE_MS if the command is still alive — consul-template's child
// handling, minus the restart.
import { spawn, type ChildProcess } from 'node:child_process';
import type { NotifyTarget } from '../types.ts';
import { errorCode, formatDuration, STOPPED, type Outcome, type RunContext } from './outcome.ts';

type ExecTarget = Extract<NotifyTarget, { kind: 'exec' }>;

/** Time between SIGTERM and SIGKILL, on timeout and on stop(). */
export const KILL_GRACE_MS = 2000;
/** How much of the command's stderr a failure log record carries. */
export const STDERR_TAIL_BYTES = 512;
/**
 * After the command exits, how long to wait for its stderr to drain. A daemon it
 * started may hold the pipe open forever; we do not wait for that.
 */
const DRAIN_MS = 200;

/**
 * Environment of the command: the agent's own, plus
 * - `SECRETS_AGENT_CHANGED_FILES`: the changed paths, relative to the output
 *   directory, joined by one space (config validation forbids spaces in paths);
 * - `SECRETS_AGENT_OUTPUT_DIR`, `SECRETS_AGENT_GENERATION`: when known.
 *
 * stdin and stdout are ignored. On failure the last STDERR_TAIL_BYTES of stderr
 * go into the log record (`stderr`): that is the user's command's own output,
 * logged as-is so an operator can see why it failed; a command that prints a
 * secret to stderr leaks it by its own doing.
 */
export function runExec(target: ExecTarget, ctx: RunContext): Promise<Outcome> {
  if (ctx.signal.aborted) return Promise.resolve(STOPPED);
  const [file, ...args] = target.argv;
  if (file === undefined || file === '') return Promise.resolve({ result: 'failure', reason: 'exec target has an empty command' });

  const env: NodeJS.ProcessEnv = { ...process.env, SECRETS_AGENT_CHANGED_FILES: ctx.changed.join(' ') };
  if (ctx.outputDir !== undefined) env['SECRETS_AGENT_OUTPUT_DIR'] = ctx.outputDir;
  if (ctx.generation !== undefined) env['SECRETS_AGENT_GENERATION'] = ctx.generation;

  let child: ChildProcess;
  try {
    child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
  } catch (err) {
    // Synchronous refusals (e.g. a NUL byte in an argument).
    return Promise.resolve({ result: 'failure', reason: `cannot run ${file}: ${errorCode(err) ?? String(err)}` });
  }

  return new Promise<Outcome>((resolve) => {
    let stderr = Buffer.alloc(0);
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = Buffer.concat([stderr, chunk]);
      if (stderr.length > STDERR_TAIL_BYTES) stderr = stderr.subarray(stderr.length - STDERR_TAIL_BYTES);
    });
    let closed = false;
    child.once('close', () => {
      closed = true;
    });

    let ended: 'timeout' | 'stop' | undefined;
    let killedWith: NodeJS.Signals | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = (why: 'timeout' | 'stop'): void => {
      if (ended !== undefined) return;
      ended = why;
      killedWith = 'SIGTERM';
      killGroup(child, 'SIGTERM');
      killTimer = setTimeout(() => {
        killedWith = 'SIGKILL';
        killGroup(child, 'SIGKILL');
      }, KILL_GRACE_MS);
      killTimer.unref();
    };
    const timeout = setTimeout(() => terminate('timeout'), target.timeoutMs);
    timeout.unref();
    const onAbort = (): void => terminate('stop');
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    let settled = false;
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      clearTimeout(killTimer);
      ctx.signal.removeEventListener('abort', onAbort);
      resolve(outcome);
    };

    child.once('error', (err) => {
      // Spawn failed (ENOENT, EACCES): there is no process and no 'exit'.
      if (child.pid === undefined) finish({ result: 'failure', reason: `cannot run ${file}: ${errorCode(err) ?? err.message}` });
    });

    child.once('exit', (code, signal) => {
      clearTimeout(timeout);
      clearTimeout(killTimer);
      const outcome = (): Outcome => {
        child.stderr?.destroy();
        const tail = stderr.length > 0 ? { stderr: stderr.toString('utf8') } : {};
        if (ended === 'stop') return { ...STOPPED, details: { pid: child.pid, killedWith } };
        if (ended === 'timeout') {
          return { result: 'failure', reason: `timed out after ${formatDuration(target.timeoutMs)}`, details: { pid: child.pid, killedWith, ...tail } };
        }
        if (code === 0) return { result: 'success', reason: 'command exited with code 0', details: { pid: child.pid } };
        if (code !== null) return { result: 'failure', reason: `command exited with code ${code}`, details: { exitCode: code, ...tail } };
        return { result: 'failure', reason: `command was killed by ${signal ?? 'a signal'}`, details: { signal, ...tail } };
      };
      if (closed) {
        finish(outcome());
        return;
      }
      const drain = setTimeout(() => finish(outcome()), DRAIN_MS);
      child.once('close', () => {
        clearTimeout(drain);
        finish(outcome());
      });
    });
  });
}

/** Signal the command's process group; fall back to the process alone. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}
