// `exec` targets: run the user's command (argv, no shell) and wait for it.
//
// The command runs in its own process group so that a timeout or stop() also
// reaches whatever it started (`sh -c "a; b"`): SIGTERM to the group, SIGKILL
// after KILL_GRACE_MS if any process of the group is still alive (the command
// itself, or a child that outlived it) — consul-template's child handling,
// minus the restart. A command cut short is reported only once its whole group
// is gone, so the agent never exits leaving part of it behind;
// killRunningCommands() SIGKILLs what is left if the process exits anyway.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
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
 * Variables that hold or lead to the agent's AWS identity, removed from the
 * command's environment: static keys and session tokens (values that are
 * credentials themselves), IRSA (role + token file), EKS Pod Identity and ECS
 * container credentials (endpoint + token or token file), and the profile
 * selectors (a profile can name a role, SSO or credential_process). Left in:
 * region, endpoint, CA bundle and proxy variables, which grant nothing.
 * docs/notify.md lists them; a target's `env:` can set any of them again.
 */
export const CREDENTIAL_VARIABLES: readonly string[] = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_SECURITY_TOKEN',
  'AWS_CREDENTIAL_EXPIRATION',
  'AWS_ROLE_ARN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ROLE_SESSION_NAME',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  'AWS_PROFILE',
  'AWS_DEFAULT_PROFILE',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
];

/** The command's environment before the SECRETS_AGENT_* variables: the agent's minus CREDENTIAL_VARIABLES, plus the target's `env`. */
export function commandEnv(agentEnv: NodeJS.ProcessEnv, targetEnv: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...agentEnv };
  for (const name of CREDENTIAL_VARIABLES) delete env[name];
  return Object.assign(env, targetEnv);
}

/**
 * Environment of the command: the agent's own without CREDENTIAL_VARIABLES,
 * the target's `env`, plus
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

  const env = commandEnv(process.env, target.env);
  env['SECRETS_AGENT_CHANGED_FILES'] = ctx.changed.join(' ');
  if (ctx.outputDir !== undefined) env['SECRETS_AGENT_OUTPUT_DIR'] = ctx.outputDir;
  if (ctx.generation !== undefined) env['SECRETS_AGENT_GENERATION'] = ctx.generation;

  let child: ChildProcess;
  try {
    child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
  } catch (err) {
    // Synchronous refusals (e.g. a NUL byte in an argument).
    return Promise.resolve({ result: 'failure', reason: `cannot run ${file}: ${errorCode(err) ?? String(err)}` });
  }
  if (child.pid !== undefined) running.add(child.pid);

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
    /** Settles when no process of the command's group is left (after SIGTERM, then SIGKILL). */
    let groupGone: Promise<void> = Promise.resolve();
    const terminate = (why: 'timeout' | 'stop'): void => {
      if (ended !== undefined) return;
      ended = why;
      killedWith = 'SIGTERM';
      groupGone = endGroup(child, () => (killedWith = 'SIGKILL'));
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
      ctx.signal.removeEventListener('abort', onAbort);
      if (child.pid !== undefined) running.delete(child.pid);
      resolve(outcome);
    };

    child.once('error', (err) => {
      // Spawn failed (ENOENT, EACCES): there is no process and no 'exit'.
      if (child.pid === undefined) finish({ result: 'failure', reason: `cannot run ${file}: ${errorCode(err) ?? err.message}` });
    });

    child.once('exit', (code, signal) => {
      clearTimeout(timeout);
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
      // Cut short: report once the whole group is gone (its outcome reads killedWith then).
      const report = (): void => void groupGone.then(() => finish(outcome()));
      if (closed) {
        report();
        return;
      }
      const drain = setTimeout(report, DRAIN_MS);
      child.once('close', () => {
        clearTimeout(drain);
        report();
      });
    });
  });
}

/** Process groups of the commands running now (their pgid = the command's pid). */
const running = new Set<number>();

/**
 * SIGKILL the process group of every command still running. Synchronous, for
 * `process.on('exit')`: whatever way the agent exits, no notify command outlives it.
 */
export function killRunningCommands(): void {
  for (const pgid of running) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  running.clear();
}

/** How often a terminated group is checked for survivors. */
const POLL_MS = 50;

/**
 * SIGTERM the command's group; SIGKILL it if any process of it is still alive
 * after KILL_GRACE_MS (`onKill` is called first). Resolves when the group is
 * empty, or shortly after the SIGKILL (which cannot be refused) if a member
 * still shows (e.g. an unkillable D-state process).
 */
async function endGroup(child: ChildProcess, onKill: () => void): Promise<void> {
  const pgid = child.pid;
  if (pgid === undefined) return;
  signalGroup(child, 'SIGTERM');
  const graceEnds = performance.now() + KILL_GRACE_MS;
  while (performance.now() < graceEnds) {
    if (!(await groupAlive(child, pgid))) return;
    await sleep(POLL_MS, undefined, { ref: false });
  }
  onKill();
  signalGroup(child, 'SIGKILL');
  for (let i = 0; i < 10 && (await groupAlive(child, pgid)); i++) await sleep(POLL_MS, undefined, { ref: false });
}

/**
 * Whether a live process is left in group `pgid` (the leader's, `leader`: while it
 * runs, the answer is yes). kill(0) also counts zombies
 * (an orphan reparented to an agent running as PID 1 stays one: nobody reaps
 * it), so a positive answer is checked against /proc/<pid>/stat.
 */
async function groupAlive(leader: ChildProcess, pgid: number): Promise<boolean> {
  if (leader.exitCode === null && leader.signalCode === null) return true;
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return errorCode(err) === 'EPERM';
  }
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // `pid (comm) state ppid pgrp ...`; comm may contain ')' so split after the last one.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

/** Signal the command's process group (its leader may have exited already); fall back to the process alone. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    if (errorCode(err) === 'ESRCH' || child.exitCode !== null || child.signalCode !== null) return;
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}
