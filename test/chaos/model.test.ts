// Model-based test of `run` on the file source (issue 11, "test the state machine").
//
// fast-check generates sequences of commands (fc.commands) against one real
// agent process on a temp dir: edit a secret; remove a key a template needs and
// put it back; break and fix a template file; add and remove files in the
// config; an invalid config edit; SIGHUP; SIGTERM and restart; kill -9 and
// restart; a second agent on the same volume; a notify that hangs, fails or
// succeeds; the volume lock removed or replaced (by a symlink, by the lease of a
// holder that is gone); a file of the live generation removed or chmod-ed, a
// user-visible link removed; the agent's wall clock stepped back or forward an
// hour (test/support/clock-shift.mjs, loaded into every agent: it shifts Date
// only). The layout (restart-only) is drawn once per sequence. Each command is
// one class and one row of `allCommands`: a new event is a class and a row.
//
// The model holds the source, the templates and the config, and recomputes the
// exact bytes the volume must hold. After every command the test waits for the
// agent to settle (polls the volume and /readyz until they match the model,
// bounded by SETTLE_MS: a bound on convergence, never a sleep that must be long
// enough), then checks the invariants:
// - /readyz (and secrets_agent_ready) is 200/1 exactly when this agent process
//   completed a render; otherwise 503/0; /healthz answers 200 within 1 s;
// - once ready, checks keep happening: secrets_agent_secret_checks_total grows
//   within one refresh interval (+ CHECK_SLACK_MS for a loaded machine);
// - the volume holds exactly one complete generation, byte for byte the render
//   of one snapshot of the source (the last one that renders), and nothing else:
//   files removed from the config are gone, no leftovers, no empty directories,
//   every file with its configured mode (0400) and every link in place: what
//   others removed or chmod-ed is restored (the agent's verify rounds);
// - after SIGTERM the agent exits 0 and no process it started outlives it;
// - every exit code is 0, 1 or 2, every stdout/stderr line is one JSON object
//   without a stack trace;
// - the canary (in every secret value) appears in no log, metric or endpoint.
//
// Bounded for CI (`npm run test:chaos`). More: MODEL_RUNS=200 MODEL_STEPS=30.
// A failure prints fast-check's seed, path and the shrunk command list; replay
// with MODEL_SEED=<seed> MODEL_PATH=<path> (and MODEL_REPLAY=<replayPath>).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, readlink, lstat, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { CANARY, GENERATION_RE, Leaks, cleanEnv, chaosAgent, clockShift, get, hasStackTrace, listenAddress, metric } from '../support/chaos-harness.ts';
import type { RunningAgent } from '../support/cli.ts';
import { killAgent, stopAgent } from '../support/procs.ts';

// ---- knobs (environment) and the contract's adaptable parts ----

const RUNS = Number(process.env['MODEL_RUNS'] ?? 3);
const STEPS = Number(process.env['MODEL_STEPS'] ?? 8);
const SEED = process.env['MODEL_SEED'] !== undefined ? Number(process.env['MODEL_SEED']) : undefined;
const PATH = process.env['MODEL_PATH'];
const REPLAY = process.env['MODEL_REPLAY'];
/** Commands to leave out, by name (e.g. MODEL_SKIP=SIGHUP,secondAgent while a known defect is open). */
const SKIP = new Set((process.env['MODEL_SKIP'] ?? '').split(',').filter(Boolean));
/** Whole-property bound (generation + shrinking) so CI stays within minutes. */
const TIME_LIMIT_MS = Number(process.env['MODEL_TIME_LIMIT_MS'] ?? 240_000);
/** How long the agent may take to reflect a change (a loaded 2-core machine). */
const SETTLE_MS = 20_000;
/** The refresh interval of the config below; checks must keep happening within it (+ slack). */
const INTERVAL_MS = 300;
/** Slack on "a check within one interval" for a loaded 2-core machine (a stopped scheduler misses it by the clock step: an hour). */
const CHECK_SLACK_MS = 2_000;
/** /healthz must answer within this long after every step. */
const HEALTHZ_MS = 1_000;
/** The files' mode (the config sets none: the default). */
const FILE_MODE = 0o400;
/** How far the clock commands step the agent's wall clock. */
const CLOCK_STEP_MS = 3_600_000;

/**
 * What a second `run` on the same outputDir must do (issue 11, defect 6):
 * 'fail'  — exit non-zero (1 or 2) with a clear JSON error line, within SECOND_AGENT_MS;
 * 'wait'  — keep running, never ready, never touch the volume, exit 0 on SIGTERM;
 * 'either'— one of the two. In every case the first agent's volume stays intact.
 */
const SECOND_AGENT_EXPECTED: 'fail' | 'wait' | 'either' = 'either';
const SECOND_AGENT_MS = 8000;
/**
 * What SIGHUP does to `run` (issue 11, defect 3): 'reload' — the agent stays up,
 * reloads its config and checks every secret now (the model does not change).
 */
const SIGHUP_EXPECTED = 'reload' as const;
/** Names in outputDir the agent owns besides the files: the volume lock (..lock) and the files layout's list of what it wrote (..manifest). */
const AGENT_METADATA_RE = /^\.\.(lock|manifest)$/;

// ---- the model ----

type Layout = 'generations' | 'files';
type OptionalFile = 'db.env' | 'conf/app.properties' | 'raw/db.json';
const OPTIONAL_FILES: readonly OptionalFile[] = ['db.env', 'conf/app.properties', 'raw/db.json'];
type NotifyMode = 'succeed' | 'fail' | 'hang';

interface Model {
  layout: Layout;
  n: number;
  api: string;
  user: string;
  /** undefined: the key the db.env template needs is removed. */
  pass: string | undefined;
  tplVersion: number;
  files: Set<OptionalFile>;
  notify: NotifyMode;
  /** The bytes the volume holds (the last render that succeeded), if any. */
  live: Map<string, string> | undefined;
  /** Whether the running agent process completed a render. */
  ready: boolean;
  /** The agents' wall-clock offset (ms), as clock-shift.mjs applies it. */
  clock: number;
}

/** Each configured file's bytes, or undefined for a file whose template cannot render (strict Liquid: db.pass missing). */
function render(m: Model): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>([['api.txt', m.api]]);
  if (m.files.has('db.env')) out.set('db.env', m.pass === undefined ? undefined : `USER=${m.user}\nPASS=${m.pass}\n`);
  if (m.files.has('conf/app.properties')) out.set('conf/app.properties', `# v${m.tplVersion}\nuser=${m.user}\n`);
  if (m.files.has('raw/db.json')) out.set('raw/db.json', JSON.stringify(m.pass === undefined ? { user: m.user } : { user: m.user, pass: m.pass }));
  return out;
}

/**
 * After a change the agent has seen: what it must converge to (README, "Failures
 * keep the last good files"). Until this process completed a render, the first
 * render is all or nothing: a file that cannot render means no write and not
 * ready (the volume keeps what an earlier process wrote). After it, a file whose
 * render fails keeps its previous bytes while the other files update; a file
 * that never rendered stays absent; files removed from the config are removed.
 */
function converge(m: Model): void {
  const r = render(m);
  const failing = [...r.values()].some((v) => v === undefined);
  if (!m.ready) {
    if (failing) return;
    m.live = r as Map<string, string>;
    m.ready = true;
    return;
  }
  const next = new Map<string, string>();
  for (const [k, v] of r) {
    const bytes = v ?? m.live?.get(k);
    if (bytes !== undefined) next.set(k, bytes);
  }
  m.live = next;
}

// ---- the real system ----

interface Real {
  dir: string;
  out: string;
  config: string;
  agent: RunningAgent;
  url: string;
  leaks: Leaks;
  agents: RunningAgent[];
  /** Every exit seen: label and code/signal. */
  exits: string[];
  /** The file clock-shift.mjs reads the offset from. */
  clock: string;
}

const tplText = (v: number) => `# v${v}\nuser={{ secrets.db.user }}\n`;

function configText(m: Model, dir: string): string {
  const files = ['  - path: api.txt\n    secret: api'];
  if (m.files.has('db.env')) files.push(`  - path: db.env\n    template: ${JSON.stringify('USER={{ secrets.db.user }}\nPASS={{ secrets.db.pass }}\n')}`);
  if (m.files.has('conf/app.properties')) files.push('  - path: conf/app.properties\n    templateFile: app.liquid');
  if (m.files.has('raw/db.json')) files.push('  - path: raw/db.json\n    secret: db');
  return `source: { type: file, path: secrets.json }
outputDir: out
layout: ${m.layout}
refresh: { interval: ${INTERVAL_MS}ms, jitter: 0.1 }
secrets:
  api: { id: api }
  db: { id: db }
files:
${files.join('\n')}
notify:
  - exec: ["/bin/sh", ${JSON.stringify(join(dir, 'notify.sh'))}]
    timeout: 5s
server: { listen: "127.0.0.1:0" }
`;
}

const NOTIFY_SH = `#!/bin/sh
d=$(dirname "$0")
echo "$SECRETS_AGENT_CHANGED_FILES" >> "$d/notified"
case "$(cat "$d/notify-mode")" in
  fail) echo "notify failed on purpose" >&2; exit 3 ;;
  hang) exec sleep 600 ;;
esac
`;

async function writeSource(m: Model, r: Real): Promise<void> {
  const db = m.pass === undefined ? { user: m.user } : { user: m.user, pass: m.pass };
  await writeFile(join(r.dir, 'secrets.json'), JSON.stringify({ api: m.api, db }));
}

function startRun(r: Real, label: string): RunningAgent {
  const shift = clockShift(r.clock);
  const a = chaosAgent(label, ['run', '--config', r.config], r.leaks, { env: cleanEnv(shift.env), nodeFlags: shift.nodeFlags });
  r.agents.push(a);
  return a;
}

async function start(r: Real, m: Model): Promise<void> {
  r.agent = startRun(r, `agent ${r.agents.length}`);
  r.url = await listenAddress(r.agent, 30_000);
  m.ready = false;
}

function recordExit(r: Real, label: string, res: { code: number | null; signal: NodeJS.Signals | null }): void {
  r.exits.push(`${label}: ${res.code ?? res.signal}`);
}

const REJECTED = /config change rejected|config reload failed/g;
const rejections = (a: RunningAgent) => (a.output().stderr.match(REJECTED) ?? []).length;

/** Wait until the agent logged one more rejection of a config or template change than `before`. */
async function waitRejected(a: RunningAgent, before: number): Promise<void> {
  const deadline = Date.now() + SETTLE_MS;
  while (rejections(a) <= before) {
    assert.ok(Date.now() < deadline, `the agent did not reject the change within ${SETTLE_MS} ms:\n${redact(a.output().stderr.slice(-2000))}`);
    assert.ok(a.child.exitCode === null && a.child.signalCode === null, `the agent exited:\n${redact(a.output().stderr.slice(-2000))}`);
    await sleep(50);
  }
}

const redact = (s: string) => s.replaceAll(CANARY, '<canary>');

/** What the volume holds now: the file map (through ..data for generations) and every problem with its shape. */
async function observe(out: string, layout: Layout): Promise<{ files: Map<string, string>; problems: string[] }> {
  const files = new Map<string, string>();
  const problems: string[] = [];
  const walk = async (dir: string, prefix: string, top: boolean): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    if (!top && entries.length === 0) problems.push(`empty directory ${prefix}`);
    for (const e of entries) {
      const rel = `${prefix}${e.name}`;
      if (top && AGENT_METADATA_RE.test(e.name)) continue;
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}/`, false);
      else if (e.isFile()) {
        files.set(rel, await readFile(join(dir, e.name), 'utf8'));
        const mode = (await lstat(join(dir, e.name))).mode & 0o7777;
        if (mode !== FILE_MODE) problems.push(`${rel} has mode ${mode.toString(8)}, want ${FILE_MODE.toString(8)}`);
      } else problems.push(`${rel} is not a regular file or directory`);
    }
  };
  if (layout === 'files') {
    await walk(out, '', true);
    for (const k of files.keys()) if (k.split('/').some((s) => s.startsWith('.'))) problems.push(`leftover ${k}`);
    return { files, problems };
  }
  const names = (await readdir(out)).filter((n) => !AGENT_METADATA_RE.test(n));
  const gens = names.filter((n) => GENERATION_RE.test(n));
  if (gens.length !== 1) problems.push(`${gens.length} generation directories`);
  let data: string | undefined;
  try {
    data = await readlink(join(out, '..data'));
  } catch {
    problems.push('no ..data link');
  }
  if (data !== undefined) {
    if (!gens.includes(data)) problems.push(`..data points to ${data}, not a generation`);
    else await walk(join(out, data), '', false);
  }
  const tops = new Set([...files.keys()].map((k) => k.split('/')[0]!));
  for (const n of names) {
    if (n === '..data' || GENERATION_RE.test(n)) continue;
    if (!tops.has(n)) {
      problems.push(`stray entry ${n}`);
      continue;
    }
    const st = await lstat(join(out, n));
    if (!st.isSymbolicLink() || (await readlink(join(out, n))) !== `..data/${n}`) problems.push(`${n} is not a link into ..data`);
  }
  for (const t of tops) if (!names.includes(t)) problems.push(`no top-level link for ${t}`);
  return { files, problems };
}

function diff(expected: Map<string, string> | undefined, files: Map<string, string>): string[] {
  const want = expected ?? new Map<string, string>();
  const d: string[] = [];
  for (const [k, v] of want) if (files.get(k) !== v) d.push(`${k}: want ${JSON.stringify(redact(v))}, have ${files.has(k) ? JSON.stringify(redact(files.get(k)!)) : 'nothing'}`);
  for (const k of files.keys()) if (!want.has(k)) d.push(`${k}: present, not in the config (or no render yet)`);
  return d;
}

/** Every line every agent printed is one JSON object without a stack; every exit code is 0/1/2. */
function checkOutputs(r: Real): void {
  for (const [i, a] of r.agents.entries()) {
    const { stdout, stderr } = a.output();
    for (const line of `${stdout}\n${stderr}`.split('\n')) {
      if (line.trim() === '') continue;
      let ok: boolean;
      try {
        const v: unknown = JSON.parse(line);
        ok = typeof v === 'object' && v !== null && !Array.isArray(v);
      } catch {
        ok = false;
      }
      assert.ok(ok, `agent ${i} printed a line that is not one JSON object: ${redact(line).slice(0, 300)}`);
      assert.ok(!hasStackTrace(line), `agent ${i} logged a stack trace: ${redact(line).slice(0, 300)}`);
    }
  }
  for (const e of r.exits) assert.match(e, /: (0|1|2|SIGKILL)$/, `an exit outside the documented codes: ${e}`);
}

/** Wait until the volume and /readyz match the model (bounded), then check every invariant. */
async function settle(m: Model, r: Real, what: string): Promise<void> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const alive = r.agent.child.exitCode === null && r.agent.child.signalCode === null;
    assert.ok(alive, `after ${what}: the agent exited (${r.agent.child.exitCode ?? r.agent.child.signalCode}):\n${redact(r.agent.output().stderr.slice(-2000))}`);
    let problems: string[];
    try {
      const v = await observe(r.out, m.layout);
      problems = [...v.problems, ...diff(m.live, v.files)];
      if (m.live === undefined) problems = v.files.size === 0 ? [] : [`files before any render: ${[...v.files.keys()].join(', ')}`];
    } catch (e) {
      problems = [`cannot read the volume: ${(e as NodeJS.ErrnoException).code ?? String(e)}`];
    }
    const ready = await get(`${r.url}/readyz`, r.leaks);
    const want = m.ready ? 200 : 503;
    if (ready.status !== want) problems.push(`/readyz ${ready.status}, want ${want}`);
    if (problems.length === 0) {
      const metrics = await get(`${r.url}/metrics`, r.leaks);
      const gauge = metric(metrics.body, 'secrets_agent_ready');
      if (gauge === (m.ready ? 1 : 0)) break;
      problems.push(`secrets_agent_ready ${gauge}, want ${m.ready ? 1 : 0}`);
    }
    if (Date.now() > deadline) assert.fail(`after ${what}: not settled in ${SETTLE_MS} ms: ${problems.join('; ')}\nagent log tail:\n${redact(r.agent.output().stderr.slice(-2500))}`);
    await sleep(100);
  }
  const t = performance.now();
  const health = await get(`${r.url}/healthz`, r.leaks, HEALTHZ_MS);
  assert.equal(health.status, 200, `after ${what}: /healthz did not answer 200 within ${HEALTHZ_MS} ms (${health.status} after ${Math.round(performance.now() - t)} ms)`);
  if (m.ready) await checksGoOn(r, what);
  checkOutputs(r);
  assert.deepEqual(r.leaks.findings(), [], `after ${what}: the canary appeared in agent output or an endpoint`);
}

/** Once ready, the scheduler keeps checking: the check counter grows within one interval (+ slack). */
async function checksGoOn(r: Real, what: string): Promise<void> {
  const checks = async () => metric((await get(`${r.url}/metrics`, r.leaks)).body, 'secrets_agent_secret_checks_total') ?? 0;
  const before = await checks();
  const t = performance.now();
  for (;;) {
    if ((await checks()) > before) return;
    const waited = performance.now() - t;
    if (waited > INTERVAL_MS + CHECK_SLACK_MS) assert.fail(`after ${what}: no check in ${Math.round(waited)} ms (interval ${INTERVAL_MS} ms)\nagent log tail:\n${redact(r.agent.output().stderr.slice(-2500))}`);
    await sleep(50);
  }
}

/** SIGTERM: exit 0, and nothing the agent started outlives it. */
async function terminate(r: Real, label: string): Promise<void> {
  const res = await stopAgent(r.agent);
  recordExit(r, label, res);
  assert.equal(res.code, 0, `${label}: SIGTERM must exit 0, got ${res.code ?? res.signal}:\n${redact(r.agent.output().stderr.slice(-2000))}`);
  assert.deepEqual(
    res.survivors.map((p) => p.comm),
    [],
    `${label}: processes started by the agent outlived it after SIGTERM`,
  );
}

// ---- the commands ----

type Cmd = fc.AsyncCommand<Model, Real>;

class EditSecret implements Cmd {
  readonly which: 'api' | 'user' | 'pass';
  constructor(which: 'api' | 'user' | 'pass') {
    this.which = which;
  }
  check = (m: Readonly<Model>) => this.which !== 'pass' || m.pass !== undefined;
  async run(m: Model, r: Real) {
    m.n++;
    const v = `${this.which}${m.n}-${CANARY}`;
    if (this.which === 'api') m.api = v;
    else if (this.which === 'user') m.user = v;
    else m.pass = v;
    await writeSource(m, r);
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => `edit(${this.which})`;
}

class RemoveKey implements Cmd {
  check = (m: Readonly<Model>) => m.pass !== undefined;
  async run(m: Model, r: Real) {
    m.pass = undefined;
    await writeSource(m, r);
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => 'removeKey(db.pass)';
}

class RestoreKey implements Cmd {
  check = (m: Readonly<Model>) => m.pass === undefined;
  async run(m: Model, r: Real) {
    m.n++;
    m.pass = `pass${m.n}-${CANARY}`;
    await writeSource(m, r);
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => 'restoreKey(db.pass)';
}

/** Break the template file (rejected, the running config stays), check, then fix it with a new version. */
class BreakAndFixTemplate implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    const before = rejections(r.agent);
    await writeFile(join(r.dir, 'app.liquid'), 'user={{ secrets.db.user ');
    if (m.files.has('conf/app.properties')) await waitRejected(r.agent, before);
    await settle(m, r, `${this.toString()} (broken)`);
    m.tplVersion++;
    await writeFile(join(r.dir, 'app.liquid'), tplText(m.tplVersion));
    converge(m);
    await settle(m, r, `${this.toString()} (fixed)`);
  }
  toString = () => 'breakAndFixTemplate';
}

class AddFile implements Cmd {
  readonly file: OptionalFile;
  constructor(file: OptionalFile) {
    this.file = file;
  }
  check = (m: Readonly<Model>) => !m.files.has(this.file);
  async run(m: Model, r: Real) {
    m.files.add(this.file);
    await writeFile(r.config, configText(m, r.dir));
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => `addFile(${this.file})`;
}

class RemoveFile implements Cmd {
  readonly file: OptionalFile;
  constructor(file: OptionalFile) {
    this.file = file;
  }
  check = (m: Readonly<Model>) => m.files.has(this.file);
  async run(m: Model, r: Real) {
    m.files.delete(this.file);
    await writeFile(r.config, configText(m, r.dir));
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => `removeFile(${this.file})`;
}

/** An invalid config edit is rejected and changes nothing; then the valid config is put back. */
class InvalidConfigEdit implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    const before = rejections(r.agent);
    await writeFile(r.config, `${configText(m, r.dir)}bogus: [\n`);
    await waitRejected(r.agent, before);
    await settle(m, r, `${this.toString()} (rejected)`);
    await writeFile(r.config, configText(m, r.dir));
    await settle(m, r, `${this.toString()} (restored)`);
  }
  toString = () => 'invalidConfigEdit';
}

class Sighup implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    r.agent.child.kill('SIGHUP');
    if (SIGHUP_EXPECTED === 'reload') {
      // A reload re-checks every secret: the model stays; the agent must stay up.
      await sleep(500);
      converge(m);
      await settle(m, r, this.toString());
    }
  }
  toString = () => 'SIGHUP';
}

class TermRestart implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    await terminate(r, `SIGTERM of agent ${r.agents.length - 1}`);
    await start(r, m);
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => 'SIGTERM+restart';
}

class KillRestart implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    // kill -9: nothing the agent can do; killAgent removes what it left, as the container runtime would.
    recordExit(r, 'kill -9', await killAgent(r.agent));
    await start(r, m);
    converge(m);
    await settle(m, r, this.toString());
  }
  toString = () => 'kill-9+restart';
}

class SecondAgent implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    const second = startRun(r, `second agent ${r.agents.length}`);
    const deadline = Date.now() + SECOND_AGENT_MS;
    while (Date.now() < deadline && second.child.exitCode === null && !/first render complete/.test(second.output().stderr)) await sleep(50);
    const log = redact(second.output().stderr.slice(-1500));
    assert.ok(!/first render complete/.test(second.output().stderr), `a second agent on the same outputDir rendered into it:\n${log}`);
    if (second.child.exitCode !== null) {
      recordExit(r, 'second agent', { code: second.child.exitCode, signal: second.child.signalCode });
      assert.notEqual(SECOND_AGENT_EXPECTED, 'wait', `the second agent exited (${second.child.exitCode}) instead of waiting:\n${log}`);
      assert.ok([1, 2].includes(second.child.exitCode), `the second agent must exit 1 or 2, got ${second.child.exitCode}:\n${log}`);
      assert.match(second.output().stderr, /"level":"(error|fatal)"/, `the second agent exited without an error line:\n${log}`);
      await stopAgent(second);
    } else {
      assert.notEqual(SECOND_AGENT_EXPECTED, 'fail', `the second agent was still running after ${SECOND_AGENT_MS} ms instead of failing:\n${log}`);
      const res = await stopAgent(second);
      recordExit(r, 'second agent (SIGTERM)', res);
      assert.equal(res.code, 0, `the waiting second agent must exit 0 on SIGTERM:\n${log}`);
    }
    await settle(m, r, this.toString());
  }
  toString = () => 'secondAgent';
}

class SetNotify implements Cmd {
  readonly mode: NotifyMode;
  constructor(mode: NotifyMode) {
    this.mode = mode;
  }
  check = (m: Readonly<Model>) => m.notify !== this.mode;
  async run(m: Model, r: Real) {
    m.notify = this.mode;
    await writeFile(join(r.dir, 'notify-mode'), this.mode);
    await settle(m, r, this.toString());
  }
  toString = () => `notify(${this.mode})`;
}


/** The volume lock removed (a clean-up job, an operator): the agent takes it again and stays ready. */
class RemoveLock implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    await unlink(join(r.out, '..lock')).catch(() => undefined);
    await sleep(2500); // one lease refresh (2 s): the agent sees it
    await settle(m, r, this.toString());
    await lockHeldBy(r, this.toString());
  }
  toString = () => 'removeLock';
}

/** The volume lock replaced by what is no other agent's live lease: a symlink, the lease of a holder that is gone, a copy of the agent's own lease (`cp` + `mv`: another inode). */
class ReplaceLock implements Cmd {
  readonly by: 'symlink' | 'deadHolder' | 'copy';
  constructor(by: 'symlink' | 'deadHolder' | 'copy') {
    this.by = by;
  }
  check = () => true;
  async run(m: Model, r: Real) {
    const aside = join(r.dir, 'lock.planted');
    await rm(aside, { force: true });
    if (this.by === 'symlink') await symlink(join(r.dir, 'nowhere'), aside);
    else if (this.by === 'deadHolder') await writeFile(aside, JSON.stringify(deadLease()));
    else await writeFile(aside, await readFile(join(r.out, '..lock')).catch(() => Buffer.from('')));
    await rename(aside, join(r.out, '..lock'));
    await sleep(2500);
    await settle(m, r, this.toString());
    await lockHeldBy(r, this.toString());
  }
  toString = () => `replaceLock(${this.by})`;
}

/** A lease in this boot and PID namespace naming a process that has exited. */
function deadLease(): Record<string, unknown> {
  const gone = spawnSync('/bin/true');
  return {
    pid: gone.pid,
    start: '1',
    pidns: readlinkSync('/proc/self/ns/pid'),
    boot: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    host: 'model',
    since: new Date().toISOString(),
  };
}

/** The running agent holds the volume lock (once it took the volume: a first render is not needed). */
async function lockHeldBy(r: Real, what: string): Promise<void> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    let pid: unknown;
    try {
      pid = (JSON.parse(await readFile(join(r.out, '..lock'), 'utf8')) as { pid?: unknown }).pid;
    } catch {
      pid = undefined;
    }
    if (pid === r.agent.child.pid) return;
    if (Date.now() > deadline) assert.fail(`after ${what}: the volume lock is not the agent's (holder ${String(pid)})\nagent log tail:\n${redact(r.agent.output().stderr.slice(-2500))}`);
    await sleep(100);
  }
}

/** Someone with access to the volume removes or chmods a file of the live generation, or removes a user-visible link. */
class TamperFile implements Cmd {
  readonly how: 'rm' | 'chmod' | 'rmLink';
  readonly pick: number;
  constructor(how: 'rm' | 'chmod' | 'rmLink', pick: number) {
    this.how = how;
    this.pick = pick;
  }
  check = (m: Readonly<Model>) => m.live !== undefined && m.live.size > 0 && (this.how !== 'rmLink' || m.layout === 'generations');
  async run(m: Model, r: Real) {
    const paths = [...m.live!.keys()].sort();
    const rel = paths[this.pick % paths.length]!;
    // Through `..data` (generations): the file inside the live generation itself.
    const base = m.layout === 'generations' ? join(r.out, '..data') : r.out;
    if (this.how === 'rm') await unlink(join(base, rel)).catch(() => undefined);
    else if (this.how === 'chmod') await chmod(join(base, rel), 0o666).catch(() => undefined);
    else await unlink(join(r.out, rel.split('/')[0]!)).catch(() => undefined);
    await settle(m, r, this.toString());
  }
  toString = () => `tamper(${this.how} #${this.pick})`;
}

/** The agents' wall clock steps (NTP, a VM resumed): nothing on the volume changes, checks go on, /healthz answers. */
class ClockStep implements Cmd {
  readonly dir: 'back' | 'forward';
  constructor(dir: 'back' | 'forward') {
    this.dir = dir;
  }
  check = () => true;
  async run(m: Model, r: Real) {
    m.clock += this.dir === 'back' ? -CLOCK_STEP_MS : CLOCK_STEP_MS;
    await writeFile(r.clock, String(m.clock));
    await sleep(100); // the preload reads the offset every 20 ms
    await settle(m, r, this.toString());
  }
  toString = () => `clock(${this.dir})`;
}

/**
 * A template that runs away (400^3 loop steps: past the 5 s bound) replaces app.liquid: the file fails within its bound and keeps its
 * bytes, /healthz answers within 1 s all along; then a new version fixes it.
 */
class RunawayTemplate implements Cmd {
  check = () => true;
  async run(m: Model, r: Real) {
    const seen = (): number => (r.agent.output().stdout + r.agent.output().stderr).match(/ran longer than 5 s|template render limit exceeded/g)?.length ?? 0;
    const before = seen();
    const chars = 'x'.repeat(400);
    await writeFile(join(r.dir, 'app.liquid'), `{% assign a = "${chars}" | split: "" %}{% for i in a %}{% for j in a %}{% for k in a %}{% endfor %}{% endfor %}{% endfor %}user={{ secrets.db.user }}\n`);
    const waitsForFailure = m.ready && m.files.has('conf/app.properties');
    const deadline = Date.now() + (waitsForFailure ? 15_000 : 6_000);
    while (waitsForFailure ? seen() === before : Date.now() < deadline) {
      assert.ok(Date.now() < deadline, `${this.toString()}: the runaway template did not fail within 15 s:\n${redact(r.agent.output().stderr.slice(-2000))}`);
      const t = Date.now();
      await fetch(`${r.url}/healthz`, { signal: AbortSignal.timeout(5_000) });
      assert.ok(Date.now() - t < 1_000, `${this.toString()}: /healthz took ${Date.now() - t} ms during the render`);
      await sleep(100);
    }
    await settle(m, r, `${this.toString()} (running away)`);
    m.tplVersion++;
    await writeFile(join(r.dir, 'app.liquid'), tplText(m.tplVersion));
    converge(m);
    await settle(m, r, `${this.toString()} (fixed)`);
  }
  toString = () => 'runawayTemplate';
}

const allCommands: [string, fc.Arbitrary<Cmd>][] = [
  ['edit', fc.constantFrom<'api' | 'user' | 'pass'>('api', 'user', 'pass').map((w): Cmd => new EditSecret(w))],
  ['removeKey', fc.constant(new RemoveKey())],
  ['restoreKey', fc.constant(new RestoreKey())],
  ['breakAndFixTemplate', fc.constant(new BreakAndFixTemplate())],
  ['addFile', fc.constantFrom(...OPTIONAL_FILES).map((f): Cmd => new AddFile(f))],
  ['removeFile', fc.constantFrom(...OPTIONAL_FILES).map((f): Cmd => new RemoveFile(f))],
  ['invalidConfigEdit', fc.constant(new InvalidConfigEdit())],
  ['SIGHUP', fc.constant(new Sighup())],
  ['SIGTERM+restart', fc.constant(new TermRestart())],
  ['kill-9+restart', fc.constant(new KillRestart())],
  ['secondAgent', fc.constant(new SecondAgent())],
  ['notify', fc.constantFrom<NotifyMode>('succeed', 'fail', 'hang').map((mode): Cmd => new SetNotify(mode))],
  ['removeLock', fc.constant(new RemoveLock())],
  ['replaceLock', fc.constantFrom<'symlink' | 'deadHolder' | 'copy'>('symlink', 'deadHolder', 'copy').map((by): Cmd => new ReplaceLock(by))],
  ['tamper', fc.tuple(fc.constantFrom<'rm' | 'chmod' | 'rmLink'>('rm', 'chmod', 'rmLink'), fc.nat(9)).map(([how, pick]): Cmd => new TamperFile(how, pick))],
  ['clock', fc.constantFrom<'back' | 'forward'>('back', 'forward').map((d): Cmd => new ClockStep(d))],
  ['runawayTemplate', fc.constant(new RunawayTemplate())],
];
const commands = allCommands.filter(([name]) => !SKIP.has(name)).map(([, arb]) => arb);

// ---- the property ----

async function sequence(layout: Layout, initialFiles: OptionalFile[], cmds: Iterable<Cmd>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-chaos-model-'));
  const m: Model = {
    layout,
    n: 1,
    api: `api1-${CANARY}`,
    user: `user1-${CANARY}`,
    pass: `pass1-${CANARY}`,
    tplVersion: 1,
    files: new Set(initialFiles),
    notify: 'succeed',
    live: undefined,
    ready: false,
    clock: 0,
  };
  const r: Real = { dir, out: join(dir, 'out'), config: join(dir, 'config.yaml'), agent: undefined as unknown as RunningAgent, url: '', leaks: new Leaks(), agents: [], exits: [], clock: join(dir, 'clock-offset') };
  try {
    await writeFile(join(dir, 'notify.sh'), NOTIFY_SH);
    await writeFile(join(dir, 'notify-mode'), 'succeed');
    await writeFile(join(dir, 'app.liquid'), tplText(1));
    await writeSource(m, r);
    await writeFile(r.config, configText(m, dir));
    await start(r, m);
    converge(m);
    await settle(m, r, 'start');
    await fc.asyncModelRun(() => ({ model: m, real: r }), cmds);
    await terminate(r, 'final SIGTERM');
    checkOutputs(r);
    assert.deepEqual(r.leaks.findings(), [], 'the canary appeared in agent output or an endpoint');
  } finally {
    for (const a of r.agents) await stopAgent(a);
    await rm(dir, { recursive: true, force: true });
  }
}

describe('model: run on the file source under every order of events', () => {
  it(`${RUNS} sequences of up to ${STEPS} commands keep every invariant`, { timeout: TIME_LIMIT_MS + 120_000 }, async () => {
    const t0 = Date.now();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Layout>('generations', 'files'),
        fc.subarray([...OPTIONAL_FILES]),
        fc.commands(commands, { maxCommands: STEPS, ...(REPLAY ? { replayPath: REPLAY } : {}) }),
        async (layout, initial, cmds) => {
          runs++;
          const t = Date.now();
          await sequence(layout, initial, cmds);
          process.stdout.write(`# model sequence ${runs}: ${layout} [${initial.join(', ')}] ${(cmds as { toString(): string }).toString()} (${Date.now() - t} ms)\n`);
        },
      ),
      {
        numRuns: RUNS,
        ...(SEED !== undefined ? { seed: SEED } : {}),
        ...(PATH ? { path: PATH } : {}),
        interruptAfterTimeLimit: TIME_LIMIT_MS,
        markInterruptAsFailure: false,
        verbose: 1,
      },
    );
    process.stdout.write(`# model: ${runs} sequences${SKIP.size ? ` (without ${[...SKIP].join(', ')})` : ''} (up to ${STEPS} commands each) in ${Math.round((Date.now() - t0) / 1000)} s\n`);
  });
});
