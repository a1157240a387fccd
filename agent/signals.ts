// Signals: what each one means to the agent (docs/commands.md, Signals), in one place.
//
// Node's defaults are wrong for a process that holds the pod's credentials:
// SIGUSR1 opens an inspector on 127.0.0.1:9229 (code execution for any
// container of a pod with `shareProcessNamespace` that can send a signal), and
// SIGHUP / SIGUSR2 end the process silently with 129 / 140. So:
//
// - guardProcess(): called by the entry (agent/main.ts) before any other module
//   of the agent loads (tests importing the CLI never call it). It refuses node
//   flags or NODE_OPTIONS that open an inspector (--inspect, --inspect-brk,
//   --inspect-wait: exit 2, one JSON line), and listens for SIGUSR1, SIGUSR2 and
//   SIGHUP. A JS listener for SIGUSR1 replaces Node's inspector activation. The
//   image and the examples also pass --disable-sigusr1, which covers the
//   milliseconds before this module runs: with it Node keeps SIGUSR1 blocked in
//   every thread, so the signal never arrives here (and is not logged).
// - handleSignals(): the running command says what SIGTERM, SIGINT and SIGHUP
//   mean; every guarded signal without a meaning is ignored with one log line
//   per signal received, naming it and why.
//
// This module imports nothing at run time: it must run before the rest loads.
import type { Logger } from './observe/log.ts';

export type SignalAction = (signal: NodeJS.Signals) => void;
export type HandledSignal = 'SIGTERM' | 'SIGINT' | 'SIGHUP';

/** Signals whose Node default (inspector, silent exit) is never wanted: always listened for. */
const GUARDED = ['SIGUSR1', 'SIGUSR2', 'SIGHUP'] as const;

const WHY_IGNORED: Readonly<Record<string, string>> = {
  SIGUSR1: 'the agent never opens a Node inspector',
  SIGUSR2: 'it has no meaning for the agent',
  SIGHUP: 'it has no meaning before a command has started',
};

interface Handlers {
  readonly log: Logger;
  readonly actions: Partial<Record<HandledSignal, SignalAction>>;
  readonly why: Partial<Record<string, string>>;
}

let current: Handlers | undefined;
const listening = new Set<NodeJS.Signals>();

function dispatch(signal: NodeJS.Signals): void {
  const action = current?.actions[signal as HandledSignal];
  if (action) {
    action(signal);
    return;
  }
  const msg = `${signal} ignored: ${current?.why[signal] ?? WHY_IGNORED[signal] ?? 'it has no meaning for the agent'}`;
  if (current) current.log.warn({ signal }, msg);
  else process.stderr.write(`${JSON.stringify({ level: 'warn', time: new Date().toISOString(), signal, msg })}\n`);
}

function listen(signal: NodeJS.Signals): void {
  if (listening.has(signal)) return;
  listening.add(signal);
  process.on(signal, dispatch);
}

/**
 * The running command's meaning for SIGTERM, SIGINT and SIGHUP (replacing any
 * earlier call's). A guarded signal (SIGUSR1, SIGUSR2, SIGHUP) without an action
 * is logged as ignored, with `why[signal]` as the reason when given.
 */
export function handleSignals(log: Logger, actions: Partial<Record<HandledSignal, SignalAction>>, why: Partial<Record<string, string>> = {}): void {
  current = { log, actions, why };
  for (const s of GUARDED) listen(s);
  for (const s of Object.keys(actions) as HandledSignal[]) listen(s);
}

/** The node flag in `flags` that opens an inspector, if any (`--inspect`, `--inspect-brk=...`, `--inspect_wait` ...). */
export function inspectorFlag(flags: readonly string[]): string | undefined {
  return flags.find((f) => /^--inspect(?:-brk|-wait|-brk-node)?(?:=|$)/.test(f.replace(/^(--[^=]*)/, (name) => name.replaceAll('_', '-'))));
}

/** What the entry point runs before anything else: refuse an inspector, guard the signals. */
export function guardProcess(): void {
  const fromEnv = (process.env['NODE_OPTIONS'] ?? '').split(/\s+/).filter(Boolean);
  const flag = inspectorFlag(process.execArgv) ?? inspectorFlag(fromEnv);
  if (flag !== undefined) {
    const where = inspectorFlag(process.execArgv) !== undefined ? 'the node flags' : 'NODE_OPTIONS';
    const msg = `refusing to start: ${flag} in ${where} opens a Node inspector, which gives code execution inside the agent (and its AWS credentials) to whoever reaches it; remove it`;
    process.stderr.write(`${JSON.stringify({ level: 'fatal', time: new Date().toISOString(), msg })}\n`);
    process.exit(2);
  }
  for (const s of GUARDED) listen(s);
}
