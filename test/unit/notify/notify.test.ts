// Notify targets against real processes, real signals, real commands and a real
// HTTP server. Nothing is mocked.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createNotifier, type NotifyResult } from '../../../agent/notify/index.ts';
import { createLogger } from '../../../agent/observe/log.ts';
import type { NotifyTarget } from '../../../agent/types.ts';
import { stopAll } from '../../support/procs.ts';
import { reachable } from '../../support/reachable.ts';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'notify');
const NODE = process.execPath;

// ---------------------------------------------------------------- helpers

const children: ChildProcess[] = [];
const dirs: string[] = [];
after(async () => {
  await stopAll(children, { signal: 'SIGKILL' });
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-notify-'));
  dirs.push(dir);
  return dir;
}

/** Unique and at most 15 bytes, so it survives the kernel's comm truncation. Never "node": other tests run beside us. */
function uniqueName(): string {
  return `saapp-${randomBytes(4).toString('hex')}`;
}

async function waitFor(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Alive = exists and is not a zombie (an orphan may linger unreaped as one). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function readLines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

interface App {
  readonly pid: number;
  /** One line per signal the app handled. */
  readonly out: string;
}

/** The fake app (fixtures/notify/app.sh); resolves once its traps are installed. */
async function startApp(dir: string, mode: 'comm' | 'none', name: string, options: SpawnOptions = {}, script = join(FIXTURES, 'app.sh')): Promise<App> {
  const out = join(dir, `${name}.out`);
  // stdin stays an open pipe: the app exits when it reads EOF, i.e. when this test process is gone.
  const child = spawn('bash', [script, mode, name, out], { ...options, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`app exited early (${code})`)));
  });
  return { pid: child.pid!, out };
}

/**
 * Send SIGUSR2 and return the app's lines once it has handled it. Every SIGHUP
 * notify() sent was sent before notify() resolved, and the app (bash) runs a
 * pending SIGHUP (1) trap before a SIGUSR2 (12) trap, so all of them are in the
 * file by then.
 */
/**
 * The number of SIGHUPs the app has handled, once every signal sent before this call has landed:
 * send SIGUSR2 and wait for it. Under load bash may run the two traps in either order, so give
 * a late SIGHUP trap a moment after the SIGUSR2 line too, and count rather than compare sequences.
 */
async function barrier(app: App): Promise<number> {
  const before = readLines(app.out).filter((l) => l === 'USR2').length;
  process.kill(app.pid, 'SIGUSR2');
  await waitFor('the app to handle SIGUSR2', () => readLines(app.out).filter((l) => l === 'USR2').length > before);
  await new Promise((r) => setTimeout(r, 200));
  return readLines(app.out).filter((l) => l === 'HUP').length;
}

type LogRecord = Record<string, unknown> & { level: string; msg: string };

function capture(targets: readonly NotifyTarget[], signal?: AbortSignal) {
  const records: LogRecord[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line));
      cb();
    },
  });
  const results: [string, NotifyResult][] = [];
  const notifier = createNotifier(targets, { log: createLogger({ destination, level: 'debug' }), onResult: (t, r) => results.push([t, r]), ...(signal ? { signal } : {}) });
  const resultLines = () => records.filter((r) => r.msg.startsWith('notify target') && 'result' in r);
  return { notifier, records, results, resultLines };
}

const signalTarget = (over: Partial<Extract<NotifyTarget, { kind: 'signal' }>>): NotifyTarget => ({
  kind: 'signal',
  name: 'reload-app',
  signal: 'SIGHUP',
  splayMs: 0,
  ...over,
});
const execTarget = (name: string, argv: string[], timeoutMs = 10_000, files?: string[]): NotifyTarget => ({
  kind: 'exec',
  name,
  argv,
  timeoutMs,
  splayMs: 0,
  ...(files ? { files } : {}),
});
const httpTarget = (name: string, url: string, timeoutMs = 5_000): NotifyTarget => ({ kind: 'http', name, url, timeoutMs, splayMs: 0 });

interface Received {
  readonly method: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
}
/** A real HTTP server on 127.0.0.1:0; `respond` undefined = never answer. */
async function startServer(respond: ((req: IncomingMessage, res: ServerResponse) => void) | undefined) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      received.push({ method: req.method, contentType: req.headers['content-type'], body });
      respond?.(req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/-/reload`,
    received,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------- signal

void describe('signal targets', () => {
  void it('when the app is found by its comm name, it receives exactly one SIGHUP per notify()', async () => {
    // Prepare
    const dir = await tempDir();
    const name = uniqueName();
    const app = await startApp(dir, 'comm', name);
    const { notifier, results, resultLines } = capture([signalTarget({ process: name })]);

    // Act + Assess
    await notifier.notify(['app.conf']);
    assert.equal(await barrier(app), 1);
    await notifier.notify(['app.conf']);
    assert.equal(await barrier(app), 2);
    assert.deepEqual(results, [['reload-app', 'success'], ['reload-app', 'success']]);
    const [line] = resultLines();
    assert.equal(line?.level, 'info');
    assert.equal(line?.target, 'reload-app');
    assert.deepEqual(line?.pids, [app.pid]);
    await notifier.stop();
  });

  void it("when only argv[0]'s basename matches (comm is \"bash\"), it signals that process", async () => {
    const dir = await tempDir();
    const name = uniqueName();
    const app = await startApp(dir, 'none', name, { argv0: `/opt/app/bin/${name}` });
    const { notifier, results } = capture([signalTarget({ process: name })]);

    await notifier.notify(['app.conf']);

    assert.equal(await barrier(app), 1);
    assert.deepEqual(results, [['reload-app', 'success']]);
  });

  void it('when the target names a pidFile, it signals that pid once per notify()', async () => {
    const dir = await tempDir();
    const app = await startApp(dir, 'none', uniqueName());
    const pidFile = join(dir, 'app.pid');
    await writeFile(pidFile, `${app.pid}\n`);
    const { notifier, results } = capture([signalTarget({ pidFile })]);

    await notifier.notify(['app.conf']);

    assert.equal(await barrier(app), 1);
    assert.deepEqual(results, [['reload-app', 'success']]);
  });

  void it('when no process has the name, it reports failure and tells the user to share the process namespace', async () => {
    const name = uniqueName();
    const { notifier, results, resultLines } = capture([signalTarget({ process: name })]);

    await notifier.notify(['app.conf']);

    assert.deepEqual(results, [['reload-app', 'failure']]);
    const [line] = resultLines();
    assert.equal(line?.level, 'warn');
    assert.equal(
      line?.reason,
      `no process named "${name}" is visible; set \`shareProcessNamespace: true\` in the pod spec (the agent sees only its own container's processes otherwise)`,
    );
  });

  void it('when only the agent itself has the name, it does not signal itself', async () => {
    const name = uniqueName();
    const oldTitle = process.title;
    // Guard: if the agent did signal itself, this handler keeps the test runner alive to fail the assertion.
    const onHup = () => undefined;
    process.on('SIGHUP', onHup);
    process.title = name;
    try {
      const { notifier, results } = capture([signalTarget({ process: name })]);
      await notifier.notify(['app.conf']);
      assert.deepEqual(results, [['reload-app', 'failure']]);
    } finally {
      process.title = oldTitle;
      process.off('SIGHUP', onHup);
    }
  });

  void it("when the pid file holds the agent's own pid, it refuses and points at the namespace setting", async () => {
    const dir = await tempDir();
    const pidFile = join(dir, 'app.pid');
    await writeFile(pidFile, String(process.pid));
    const { notifier, results, resultLines } = capture([signalTarget({ pidFile })]);

    await notifier.notify(['app.conf']);

    assert.deepEqual(results, [['reload-app', 'failure']]);
    assert.match(String(resultLines()[0]?.reason), /agent's own pid .*shareProcessNamespace: true/);
  });

  void it('when the pid file is missing, empty or not a positive integer, it fails with a clear message that does not quote the content', async () => {
    const dir = await tempDir();
    const cases: [content: string | undefined, expected: RegExp][] = [
      [undefined, /^cannot read pid file .*missing\.pid: ENOENT$/],
      ['', /is empty$/],
      ['  \n', /is empty$/],
      ['not-a-pid-secret', /does not hold a process id \(expected one positive decimal integer\)$/],
      ['0', /does not hold a process id/],
      ['-1', /does not hold a process id/],
      ['12 34', /does not hold a process id/],
    ];
    for (const [i, [content, expected]] of cases.entries()) {
      const pidFile = join(dir, content === undefined ? 'missing.pid' : `bad-${i}.pid`);
      if (content !== undefined) await writeFile(pidFile, content);
      const { notifier, results, resultLines } = capture([signalTarget({ pidFile })]);

      await notifier.notify(['app.conf']);

      assert.deepEqual(results, [['reload-app', 'failure']], `case ${i}`);
      const reason = String(resultLines()[0]?.reason);
      assert.match(reason, expected, `case ${i}`);
      assert.ok(!reason.includes('secret'), `case ${i}: content quoted`);
    }
  });

  void it('when the pid in the pid file is gone (ESRCH), it says the pid file is stale', async () => {
    const dir = await tempDir();
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    const pidFile = join(dir, 'app.pid');
    await writeFile(pidFile, String(gone.pid));
    const { notifier, results, resultLines } = capture([signalTarget({ pidFile })]);

    await notifier.notify(['app.conf']);

    assert.deepEqual(results, [['reload-app', 'failure']]);
    assert.match(String(resultLines()[0]?.reason), new RegExp(`^pid ${gone.pid} from pid file .* is not running \\(ESRCH\\): the pid file is stale`));
  });

  const asRoot = process.getuid?.() === 0;
  void it('when the agent runs as another non-root uid than the app (EPERM), it names the same-UID / CAP_KILL fix', { skip: asRoot ? false : 'needs root to start processes as other uids' }, async () => {
    // Prepare: the app runs as nobody (65534); the notifier runs in a child as uid 65533.
    const dir = await tempDir();
    await chmod(dir, 0o755); // the notifier (65533) reads the pid file
    const name = uniqueName();
    // The app's script, node and the notifier copied where 65534 and 65533 can reach them, wherever the clone lies.
    const place = await reachable();
    after(() => place.close());
    const script = join(place.dir, 'app.sh');
    await copyFile(join(FIXTURES, 'app.sh'), script);
    await chmod(script, 0o755);
    const app = await startApp(dir, 'comm', name, { uid: 65534, gid: 65534 }, script);
    const pidFile = join(dir, 'app.pid');
    await writeFile(pidFile, String(app.pid), { mode: 0o644 });
    const targets = [signalTarget({ name: 'by-name', process: name }), signalTarget({ name: 'by-pid-file', pidFile })];

    // Act
    const child = spawn(place.node, [await place.bundle(join(FIXTURES, 'notify-as.ts')), JSON.stringify(targets)], {
      uid: 65533,
      gid: 65533,
      cwd: '/',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise((r) => child.once('exit', r));

    // Assess
    assert.equal(code, 0);
    const lines = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.deepEqual(lines.at(-1), { results: [['by-name', 'failure'], ['by-pid-file', 'failure']] });
    const hint = `not permitted to signal pid ${app.pid} ("${name}"): run the agent with the same UID as the app (securityContext.runAsUser); CAP_KILL only helps an agent running as root, since Kubernetes does not make added capabilities effective for non-root users`;
    assert.deepEqual(
      lines.filter((l) => l.msg === 'notify target failed').map((l) => [l.target, l.reason, l.code]),
      [['by-name', hint, 'EPERM'], ['by-pid-file', hint, 'EPERM']],
    );
    assert.deepEqual(readLines(app.out), [], 'the app got no signal');
  });
});

// ---------------------------------------------------------------- exec

void describe('exec targets', () => {
  void it('when it runs, the command gets the changed files, output dir and generation in its env, the agent env, and an empty stdin', async () => {
    const dir = await tempDir();
    const out = join(dir, 'env.json');
    const { notifier, results } = capture([execTarget('hook', [NODE, join(FIXTURES, 'exec-env.ts'), out])]);

    await notifier.notify(['db.env', 'tls/tls.crt'], { outputDir: dir, generation: '..2026_11_28_06_00_00.123456789' });

    assert.deepEqual(results, [['hook', 'success']]);
    assert.deepEqual(JSON.parse(await readFile(out, 'utf8')), {
      changed: 'db.env tls/tls.crt',
      outputDir: dir,
      generation: '..2026_11_28_06_00_00.123456789',
      path: process.env['PATH'] ?? null,
      stdinBytes: 0,
    });
  });

  void it('when the command exits non-zero, it reports failure with the exit code and the last 512 bytes of stderr', async () => {
    const { notifier, results, resultLines } = capture([execTarget('hook', [NODE, join(FIXTURES, 'exec-fail.ts')])]);

    await notifier.notify(['db.env']);

    assert.deepEqual(results, [['hook', 'failure']]);
    const [line] = resultLines();
    assert.equal(line?.level, 'warn');
    assert.equal(line?.reason, 'command exited with code 3');
    assert.equal(line?.exitCode, 3);
    const stderr = String(line?.stderr);
    assert.equal(Buffer.byteLength(stderr), 512);
    assert.ok(stderr.endsWith('x\nEND-OF-STDERR\n'));
  });

  void it('when the command outlives its timeout and ignores SIGTERM, it is SIGKILLed with its children and reported as timed out', async () => {
    const dir = await tempDir();
    const pids = join(dir, 'pids');
    // Ignoring TERM is inherited by the background sleep; the pids are written after the trap is set.
    const script = `trap "" TERM; sleep 1000 & echo "$$ $!" > "${pids}"; wait`;
    const { notifier, results, resultLines } = capture([execTarget('hook', ['bash', '-c', script], 1000)]);

    await notifier.notify(['db.env']);

    assert.deepEqual(results, [['hook', 'failure']]);
    const [line] = resultLines();
    assert.equal(line?.reason, 'timed out after 1s');
    assert.equal(line?.killedWith, 'SIGKILL');
    const [shell, sleeper] = (await readFile(pids, 'utf8')).trim().split(' ').map(Number);
    assert.ok(shell && sleeper);
    assert.equal(isAlive(shell), false, 'the command is gone');
    await waitFor('the orphaned sleep to die', () => !isAlive(sleeper));
  });

  void it('when the command does not exist, it reports failure naming the command and ENOENT', async () => {
    const { notifier, results, resultLines } = capture([execTarget('hook', ['/nonexistent/reload-app'])]);

    await notifier.notify(['db.env']);

    assert.deepEqual(results, [['hook', 'failure']]);
    assert.equal(resultLines()[0]?.reason, 'cannot run /nonexistent/reload-app: ENOENT');
  });

  void it('when stop() is called while the command runs, it terminates the command and reports skipped', async () => {
    const dir = await tempDir();
    const pidFile = join(dir, 'pid');
    const { notifier, results } = capture([execTarget('hook', ['bash', '-c', `echo $$ > "${pidFile}"; exec sleep 1000`], 60_000)]);

    const running = notifier.notify(['db.env']);
    await waitFor('the command to start', () => readLines(pidFile).length > 0);
    const pid = Number(readLines(pidFile)[0]);
    await notifier.stop();
    await running;

    assert.deepEqual(results, [['hook', 'skipped']]);
    assert.equal(isAlive(pid), false);
  });

  void it('when stop() is called and the command dies but leaves a child that ignores SIGTERM, stop() resolves only once that child is SIGKILLed', async () => {
    const dir = await tempDir();
    const pids = join(dir, 'pids');
    // The shell dies on SIGTERM; the background sleep ignores it and would outlive it.
    const script = `(trap "" TERM; exec sleep 1000) & echo "$$ $!" > "${pids}"; wait`;
    const { notifier, results, resultLines } = capture([execTarget('hook', ['sh', '-c', script], 60_000)]);

    const running = notifier.notify(['db.env']);
    await waitFor('the command to start', () => readLines(pids).length > 0);
    const [shell, sleeper] = readLines(pids)[0]!.split(' ').map(Number) as [number, number];
    await waitFor('the child to be sleep', () => existsSync(`/proc/${sleeper}/comm`) && readFileSync(`/proc/${sleeper}/comm`, 'utf8') === 'sleep\n');
    await notifier.stop();
    await running;

    assert.deepEqual(results, [['hook', 'skipped']]);
    assert.equal(resultLines()[0]?.killedWith, 'SIGKILL');
    assert.equal(isAlive(shell), false);
    assert.equal(isAlive(sleeper), false, 'no process of the group is left when stop() resolves');
  });

  void it('when the shutdown signal given to createNotifier aborts, the running command is terminated without waiting for stop()', async () => {
    const dir = await tempDir();
    const pidFile = join(dir, 'pid');
    const shutdown = new AbortController();
    const { notifier, results } = capture([execTarget('hook', ['bash', '-c', `echo $$ > "${pidFile}"; exec sleep 1000`], 60_000)], shutdown.signal);

    const running = notifier.notify(['db.env']);
    await waitFor('the command to start', () => readLines(pidFile).length > 0);
    const pid = Number(readLines(pidFile)[0]);
    shutdown.abort();
    await running;

    assert.deepEqual(results, [['hook', 'skipped']]);
    assert.equal(isAlive(pid), false);
    await notifier.notify(['db.env']);
    assert.equal(results.length, 1, 'later notify() calls do nothing');
  });
});

// ---------------------------------------------------------------- http

void describe('http targets', () => {
  void it('when the endpoint answers 2xx, it got one JSON POST with the changed files and generation', async () => {
    const server = await startServer((_req, res) => res.writeHead(204).end());
    try {
      const { notifier, results } = capture([httpTarget('reload', server.url)]);

      await notifier.notify(['db.env', 'tls.crt'], { outputDir: '/run/secrets/app', generation: '..gen1' });

      assert.deepEqual(results, [['reload', 'success']]);
      assert.equal(server.received.length, 1);
      const [req] = server.received;
      assert.equal(req?.method, 'POST');
      assert.equal(req?.contentType, 'application/json');
      assert.deepEqual(JSON.parse(req?.body ?? ''), { changedFiles: ['db.env', 'tls.crt'], generation: '..gen1' });
    } finally {
      await server.close();
    }
  });

  void it('when the endpoint answers 500, it reports failure with the status', async () => {
    const server = await startServer((_req, res) => res.writeHead(500).end('boom'));
    try {
      const { notifier, results, resultLines } = capture([httpTarget('reload', server.url)]);

      await notifier.notify(['db.env']);

      assert.deepEqual(results, [['reload', 'failure']]);
      assert.equal(resultLines()[0]?.reason, 'HTTP 500');
      assert.equal(resultLines()[0]?.status, 500);
    } finally {
      await server.close();
    }
  });

  void it('when the endpoint never answers, it reports failure after the timeout', async () => {
    const server = await startServer(undefined);
    try {
      const { notifier, results, resultLines } = capture([httpTarget('reload', server.url, 300)]);

      await notifier.notify(['db.env']);

      assert.deepEqual(results, [['reload', 'failure']]);
      assert.equal(resultLines()[0]?.reason, 'timed out after 300ms');
      assert.equal(server.received.length, 1);
    } finally {
      await server.close();
    }
  });

  void it('when the endpoint redirects, it does not follow and reports failure', async () => {
    const elsewhere = await startServer((_req, res) => res.writeHead(200).end());
    const server = await startServer((_req, res) => res.writeHead(307, { location: elsewhere.url }).end());
    try {
      const { notifier, results, resultLines } = capture([httpTarget('reload', server.url)]);

      await notifier.notify(['db.env']);

      assert.deepEqual(results, [['reload', 'failure']]);
      assert.match(String(resultLines()[0]?.reason), /^HTTP 307: redirects are not followed/);
      assert.equal(elsewhere.received.length, 0);
    } finally {
      await server.close();
      await elsewhere.close();
    }
  });

  void it('when nothing listens, it reports the network error code', async () => {
    const server = await startServer(undefined);
    const url = server.url;
    await server.close();
    const { notifier, results, resultLines } = capture([httpTarget('reload', url)]);

    await notifier.notify(['db.env']);

    assert.deepEqual(results, [['reload', 'failure']]);
    assert.equal(resultLines()[0]?.reason, 'request failed: ECONNREFUSED');
  });

  void it('when fetch refuses the port (a "bad port", no error code), it reports why, not "Error"', async () => {
    // validate rejects these ports; a target built without it must still say what went wrong.
    const { notifier, results, resultLines } = capture([httpTarget('reload', 'http://127.0.0.1:6000/reload')]);

    await notifier.notify(['db.env']);

    assert.deepEqual(results, [['reload', 'failure']]);
    assert.equal(resultLines()[0]?.reason, 'request failed: bad port');
  });
});

// ---------------------------------------------------------------- the notifier

void describe('createNotifier', () => {
  void it('when several targets are configured, it runs them in order and a failing one does not stop the rest', async () => {
    const dir = await tempDir();
    const order = join(dir, 'order');
    const server = await startServer((_req, res) => {
      appendFileSync(order, 'second\n');
      res.writeHead(200).end();
    });
    try {
      const { notifier, results } = capture([
        execTarget('first', [NODE, join(FIXTURES, 'exec-env.ts'), join(dir, '1.json'), 'first', order]),
        execTarget('broken', [NODE, join(FIXTURES, 'exec-fail.ts')]),
        httpTarget('second', server.url),
        execTarget('third', [NODE, join(FIXTURES, 'exec-env.ts'), join(dir, '3.json'), 'third', order]),
      ]);

      await notifier.notify(['db.env']);

      assert.deepEqual(readLines(order), ['first', 'second', 'third']);
      assert.deepEqual(results, [['first', 'success'], ['broken', 'failure'], ['second', 'success'], ['third', 'success']]);
    } finally {
      await server.close();
    }
  });

  void it("when a target has a files filter, it runs only if one of its files changed and is not reported otherwise", async () => {
    const dir = await tempDir();
    const tlsOut = join(dir, 'tls.json');
    const anyOut = join(dir, 'any.json');
    const { notifier, results, records } = capture([
      execTarget('tls-only', [NODE, join(FIXTURES, 'exec-env.ts'), tlsOut], 10_000, ['tls.crt', 'tls.key']),
      execTarget('any', [NODE, join(FIXTURES, 'exec-env.ts'), anyOut]),
    ]);

    await notifier.notify(['db.env']);
    assert.equal(existsSync(tlsOut), false);
    assert.equal(existsSync(anyOut), true);
    assert.deepEqual(results, [['any', 'success']]);
    assert.ok(records.some((r) => r.level === 'debug' && r.target === 'tls-only'));

    await notifier.notify(['db.env', 'tls.key']);
    assert.equal(JSON.parse(await readFile(tlsOut, 'utf8')).changed, 'db.env tls.key');
    assert.deepEqual(results, [['any', 'success'], ['tls-only', 'success'], ['any', 'success']]);

    await notifier.notify([]);
    assert.equal(results.length, 3, 'nothing changed: nobody is told');
  });

  void it('when a target has a splay, it still notifies after the delay', async () => {
    const dir = await tempDir();
    const name = uniqueName();
    const app = await startApp(dir, 'comm', name);
    const { notifier, results } = capture([signalTarget({ process: name, splayMs: 50 })]);

    await notifier.notify(['app.conf']);

    assert.equal(await barrier(app), 1);
    assert.deepEqual(results, [['reload-app', 'success']]);
  });

  void it('when stop() is called during a splay, the pending notification is cancelled and later notify() calls do nothing', async () => {
    // Prepare
    const dir = await tempDir();
    const name = uniqueName();
    const app = await startApp(dir, 'comm', name);
    // A 10-minute splay: if stop() did not cut it short, this test would time out.
    const { notifier, results, records, resultLines } = capture([signalTarget({ process: name, splayMs: 600_000 })]);

    // Act
    const pending = notifier.notify(['app.conf']);
    await waitFor('the splay to start', () => records.some((r) => r.msg === 'notify target waiting for splay'));
    await notifier.stop();
    await pending;
    await notifier.notify(['app.conf']);

    // Assess
    assert.deepEqual(results, [['reload-app', 'skipped']]);
    assert.equal(resultLines()[0]?.level, 'info');
    assert.equal(await barrier(app), 0, 'the app got no SIGHUP');
  });
});
