// Case 5 (measured part): rotation propagation and GetSecretValue per rotation.
//
// Two agents side by side, each behind its own recording proxy, each notifying
// an HTTP endpoint here after every write:
// - rotationAware: a 1 h base interval; the proxy adds RotationEnabled and a
//   NextRotationDate to moto's DescribeSecret answers (moto 5.2 reports
//   neither), and each secret is rotated (PutSecretValue) right at its date.
// - base interval only: rotationAware off, a short interval (5 s), secrets
//   rotated at the same moments.
// Latency per rotation: PutSecretValue answered -> the file has the new bytes
// (inotify on the output dir) -> the app's endpoint got a POST naming the file.
// Rotations are 1.25 s apart, more than the agent's 500 ms coalescing window
// plus a write, so each is measured alone.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { agentVariants, createSecrets, rotate, secretValue, startRun, Tally, writeConfig, type BenchContext, type Created } from './fixtures.ts';
import { percentile, round, until, type Proc } from './lib.ts';

export interface PropagationRow {
  mode: string;
  interval: string;
  rotations: number;
  /** Rotations whose file changed / whose app was notified before the deadline. */
  completed: number;
  fileP50Ms: number;
  fileP99Ms: number;
  notifyP50Ms: number;
  notifyP99Ms: number;
  notifyMaxMs: number;
  /** GetSecretValue calls after the first render, per rotation (goal: 1). */
  getSecretValuePerRotation: number;
  /** DescribeSecret calls after the first render (checks and rotation probes). */
  describeCalls: number;
  notifications: number;
}

export interface RotationResult {
  spacingMs: number;
  rows: PropagationRow[];
  notes: string[];
}

const SPACING_MS = 1250;
/** The scheduler's FIRST_LOOK_MS: rotationAware's first check of each secret comes within this long of the first render. */
const FIRST_LOOK_SPREAD_MS = 2000;

interface Mode {
  name: string;
  interval: string;
  intervalMs: number;
  rotationAware: boolean;
  /** Offset of this mode's rotations, so the two agents do not hit moto at the same instant. */
  offsetMs: number;
}

export async function rotationCase(ctx: BenchContext): Promise<RotationResult> {
  const count = ctx.quick ? 2 : 20;
  const baseMs = ctx.quick ? 1000 : 5000;
  const modes: Mode[] = [
    { name: 'rotationAware (1h interval)', interval: '1h', intervalMs: 3_600_000, rotationAware: true, offsetMs: 0 },
    { name: 'base interval only', interval: `${baseMs / 1000}s`, intervalMs: baseMs, rotationAware: false, offsetMs: 600 },
  ];
  const rows = await Promise.all(modes.map((m, i) => runMode(ctx, m, count, i)));
  return {
    spacingMs: SPACING_MS,
    rows,
    notes: [
      'rotationAware: the proxy adds RotationEnabled/NextRotationDate to DescribeSecret (moto reports neither); each rotation happens at its NextRotationDate.',
      `base interval only: latency is spread over one interval (± jitter 0.2); at the default 5m expect p50 ≈ ${round(0.5 * 300, 0)} s, p99 ≈ ${round(1.2 * 300, 0)} s.`,
    ],
  };
}

async function runMode(ctx: BenchContext, mode: Mode, count: number, modeNo: number): Promise<PropagationRow> {
  const prefix = `bench/rot-${modeNo}`;
  const secrets = await createSecrets(ctx.moto, Array.from({ length: count }, (_, i) => `${prefix}/r${String(i).padStart(2, '0')}`));
  const name = (s: Created): string => s.id.split('/').pop() as string;
  const proxy: Proxy = await startProxy(ctx.moto.url);
  const tally = new Tally(proxy);
  const dir = join(ctx.root, `rotation-${modeNo}`);
  const out = join(dir, 'out');

  // Where the agent posts after each write: the time and the files it names.
  const posts: { at: number; files: string[] }[] = [];
  const server: Server = createServer((req, res) => {
    const at = Date.now();
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      try {
        posts.push({ at, files: (JSON.parse(body) as { changedFiles?: string[] }).changedFiles ?? [] });
      } catch {
        posts.push({ at, files: [] });
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;

  // The rotation schedule. rotationAware: fixed by the first DescribeSecret
  // (the agent's first look, all within 2 s of its first render), far enough
  // ahead that every first look sees the dates. Base interval: after the first render.
  let startAt: number | undefined;
  const dateOf = (i: number): number => (startAt as number) + i * SPACING_MS;
  const index = new Map(secrets.map((s, i) => [s.id, i]));
  if (mode.rotationAware) {
    proxy.transform = (operation, body) => {
      const i = typeof body.Name === 'string' ? index.get(body.Name) : undefined;
      if (operation !== 'DescribeSecret' || i === undefined) return body;
      startAt ??= Date.now() + FIRST_LOOK_SPREAD_MS + (ctx.quick ? 300 : 1000) + mode.offsetMs;
      return { ...body, RotationEnabled: true, RotationRules: { AutomaticallyAfterDays: 30 }, NextRotationDate: dateOf(i) / 1000 };
    };
  }

  const config = await writeConfig(dir, {
    outputDir: out,
    interval: mode.interval,
    rotationAware: mode.rotationAware,
    secrets: secrets.map((s) => ({ name: name(s), id: s.id })),
    files: secrets.map((s) => `  - { path: ${name(s)}, secret: ${name(s)} }`),
    notify: [`  - http: http://127.0.0.1:${port}/reload`],
  });

  let proc: Proc | undefined;
  let watcher: FSWatcher | undefined;
  try {
    const started = await startRun(ctx, agentVariants(ctx).bundle, config, proxy.url);
    proc = started.proc;
    tally.reset();
    if (mode.rotationAware) await until('the first look (DescribeSecret)', () => startAt !== undefined, FIRST_LOOK_SPREAD_MS + 10_000, 20);
    else startAt = Date.now() + 1000 + mode.offsetMs;

    // File changes: inotify on the output dir (the ..data swap), plus a slow poll in case an event is missed.
    const putAt = new Map<string, number>();
    const fileAt = new Map<string, number>();
    const expected = new Map<string, string>();
    let scanning = false;
    const scan = async (): Promise<void> => {
      if (scanning) return;
      scanning = true;
      const at = Date.now();
      try {
        for (const [id, value] of expected) {
          if (fileAt.has(id)) continue;
          const got = await readFile(join(out, id.split('/').pop() as string), 'utf8').catch(() => '');
          if (got === value) fileAt.set(id, at);
        }
      } finally {
        scanning = false;
      }
    };
    watcher = watch(out, () => void scan());
    const poll = setInterval(() => void scan(), 100);

    await Promise.all(
      secrets.map(async (s, i) => {
        await sleep(Math.max(0, dateOf(i) - Date.now()));
        const value = secretValue(1000 + i, 7 + modeNo);
        await rotate(ctx.moto, s, value);
        putAt.set(s.id, Date.now());
        expected.set(s.id, value);
      }),
    );
    const notified = (s: Created): number | undefined =>
      posts.find((p) => p.at >= (putAt.get(s.id) ?? Infinity) && p.files.includes(name(s)))?.at;
    const deadline = (mode.rotationAware ? 15_000 : mode.intervalMs * 1.3 + 5000) + 2000;
    await until('every rotation to reach the app', () => secrets.every((s) => notified(s) !== undefined), deadline, 50).catch(() => undefined);
    // A little longer: extra calls after the change (there should be none) are counted too.
    await sleep(ctx.quick ? 200 : 1000);
    clearInterval(poll);

    const fileMs = secrets.flatMap((s) => (fileAt.has(s.id) ? [(fileAt.get(s.id) as number) - (putAt.get(s.id) as number)] : []));
    const notifyMs = secrets.flatMap((s) => {
      const at = notified(s);
      return at === undefined ? [] : [at - (putAt.get(s.id) as number)];
    });
    return {
      mode: mode.name,
      interval: mode.interval,
      rotations: count,
      completed: notifyMs.length,
      fileP50Ms: round(percentile(fileMs, 50)),
      fileP99Ms: round(percentile(fileMs, 99)),
      notifyP50Ms: round(percentile(notifyMs, 50)),
      notifyP99Ms: round(percentile(notifyMs, 99)),
      notifyMaxMs: round(Math.max(...notifyMs)),
      getSecretValuePerRotation: round(tally.get('GetSecretValue') / count, 2),
      describeCalls: tally.get('DescribeSecret'),
      notifications: posts.length,
    };
  } finally {
    watcher?.close();
    await proc?.stop();
    await proxy.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}
