// A full volume: the output directory is a size-limited tmpfs (as an emptyDir
// with medium: Memory and a sizeLimit is), filled up by another writer. The
// agent must report ENOSPC clearly, keep the previous generation intact and
// readable, stay ready, and write the pending change once space returns.
//
// Needs root (mount -t tmpfs). In CI a refused mount is a failure; elsewhere
// the suite is skipped with the reason.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, readlink, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunningAgent } from '../support/cli.ts';
import { CANARY, Leaks, chaosAgent, chaosRun, cleanEnv, get, listenAddress, metric, mountError, mountTmpfs, readOr, unmount, volume, waitUntil } from '../support/chaos-harness.ts';
import { stopAll } from '../support/procs.ts';

const INTERVAL_MS = 300;
const BODY = 60_000;

describe('full volume (a size-limited tmpfs)', () => {
  let root: string;
  let vol: string;
  let mounted = false;
  let skip: string | undefined;
  const leaks = new Leaks();
  const agents: RunningAgent[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sa-chaos-full-'));
    vol = join(root, 'vol');
    await mkdir(vol);
    mounted = mountTmpfs(vol, '1m');
    if (!mounted) {
      if (process.env.CI) throw new Error(`cannot mount a tmpfs (needs root): ${mountError}`);
      skip = `cannot mount a tmpfs here (needs root): ${mountError}`;
    }
  });

  after(async () => {
    await stopAll(agents);
    if (mounted) await unmount(vol);
    if (root) await rm(root, { recursive: true, force: true });
  });

  async function setup(name: string, version: number) {
    const dir = join(root, name);
    const out = join(vol, name);
    await mkdir(dir, { recursive: true });
    const secrets = join(dir, 'secrets.json');
    const put = (v: number) => writeFile(secrets, JSON.stringify({ tls: { cert: `cert-v${v}-${CANARY}-${'c'.repeat(BODY)}`, key: `key-v${v}-${CANARY}-${'k'.repeat(BODY)}` } }));
    await put(version);
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `source: { type: file, path: ${secrets} }
outputDir: ${out}
refresh: { interval: ${INTERVAL_MS}ms, jitter: 0.1, rotationAware: false }
secrets:
  tls: { id: tls }
files:
  - path: tls.crt
    secret: tls
    key: cert
  - path: tls.key
    secret: tls
    key: key
server: { listen: "127.0.0.1:0" }
`,
    );
    return { dir, out, config, put };
  }

  /** Fills the volume with a foreign file until ENOSPC; returns its path (delete it to free the space). */
  async function fill(name: string): Promise<{ path: string; bytes: number }> {
    const path = join(vol, name);
    const fh = await open(path, 'w');
    let bytes = 0;
    const chunk = Buffer.alloc(16 * 1024, 0x41);
    try {
      for (;;) {
        try {
          await fh.write(chunk);
          bytes += chunk.length;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          // Take every last page too.
          for (const n of [4096, 512, 1]) {
            try {
              for (;;) {
                await fh.write(chunk.subarray(0, n));
                bytes += n;
              }
            } catch {
              // full at this size
            }
          }
          return { path, bytes };
        }
      }
    } finally {
      await fh.close();
    }
  }

  it('when the volume fills up under the sidecar, it reports ENOSPC, keeps the previous generation and recovers when space returns', async (t) => {
    if (skip) return t.skip(skip);
    const c = await setup('sidecar', 1);
    const agent = chaosAgent('sidecar', ['run', '--config', c.config, '--log-level', 'debug'], leaks, { env: cleanEnv() });
    agents.push(agent);
    const base = await listenAddress(agent);
    await agent.waitFor(/first render complete/);
    const before = await volume(c.out);
    const crt = await readFile(join(c.out, 'tls.crt'), 'utf8');
    assert.ok(crt.startsWith('cert-v1-'));

    const filler = await fill('filler.bin');
    const logBefore = agent.output().stderr.length;
    await c.put(2);
    await agent.waitFor(/no space left on device/, 10_000);
    const message = agent.output().stderr.slice(logBefore).split('\n').find((l) => l.includes('no space left on device')) ?? '';
    process.stdout.write(`# ENOSPC (sidecar): ${JSON.parse(message).msg}\n`);
    assert.match(message, /"code":"ENOSPC"/);
    assert.match(message, /previous files are unchanged/);
    assert.match(message, /sizeLimit/, 'the message says what to do');

    // Several more intervals on a full volume: nothing moves, nothing breaks.
    for (let i = 0; i < 5; i++) {
      await sleep(INTERVAL_MS);
      const now = await volume(c.out);
      assert.equal(now.data, before.data, '..data moved on a full volume');
      assert.deepEqual(now.reserved, before.reserved, 'a partial generation was left on the volume');
      assert.equal(await readFile(join(c.out, 'tls.crt'), 'utf8'), crt, 'the previous tls.crt is not intact');
      assert.deepEqual(now.files, before.files);
      assert.equal((await get(`${base}/readyz`, leaks)).status, 200);
      assert.equal((await get(`${base}/healthz`, leaks)).status, 200);
    }
    const metrics = (await get(`${base}/metrics`, leaks)).body;
    const errors = metric(metrics, 'secrets_agent_files_writes_total', { result: 'error' }) ?? 0;
    assert.ok(errors >= 1, 'the failed write is counted in secrets_agent_files_writes_total{result="error"}');

    // Space returns: the change made while the volume was full must reach it, without
    // another change of the secret, within a few intervals.
    await unlink(filler.path);
    const freed = Date.now();
    await waitUntil(
      'the pending change written after space returned',
      async () => (await readOr(join(c.out, 'tls.crt'))).startsWith('cert-v2-'),
      INTERVAL_MS * 3 + 5000,
    ).catch((e: unknown) => {
      throw new Error(
        `${(e as Error).message}: the agent does not retry a failed write until the secret changes again\n` +
          `${agent.output().stderr.split('\n').slice(-6).join('\n')}`,
      );
    });
    process.stdout.write(`# full volume: ${Math.round(filler.bytes / 1024)} KiB filler; recovered ${Date.now() - freed} ms after space returned\n`);
    const after = await volume(c.out);
    assert.equal(after.generations.length, 1, 'one generation after recovery');
    assert.ok(after.files.get('tls.key')?.startsWith('key-v2-'));
    assert.equal(agent.child.exitCode, null);
    assert.doesNotMatch(agent.output().stderr, /unhandled|"level":"fatal"/i);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('when init finds the volume full, it exits 1 naming ENOSPC and leaves the previous generation intact', async (t) => {
    if (skip) return t.skip(skip);
    const c = await setup('init', 1);
    const first = await chaosRun('init #1', ['init', '--config', c.config, '--timeout', '10s'], leaks, { env: cleanEnv() });
    assert.equal(first.code, 0, first.stderr);
    const before = await volume(c.out);
    const data = await readlink(join(c.out, '..data'));
    const filler = await fill('filler-init.bin');
    try {
      await c.put(2);
      const r = await chaosRun('init #2', ['init', '--config', c.config, '--timeout', '10s'], leaks, { env: cleanEnv() });
      process.stdout.write(`# ENOSPC (init): exit ${r.code}: ${r.stderr.split('\n').filter((l) => l.includes('ENOSPC')).map((l) => (JSON.parse(l) as { msg: string }).msg)[0]}\n`);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no space left on device/);
      assert.match(r.stderr, /previous files are unchanged/);
      assert.doesNotMatch(r.stderr, /unexpected error|"level":"fatal"/);
      assert.equal(await readlink(join(c.out, '..data')), data);
      const now = await volume(c.out);
      assert.deepEqual(now.reserved, before.reserved, 'leftovers of the failed write');
      assert.deepEqual(now.files, before.files, 'the previous generation changed');
    } finally {
      await unlink(filler.path);
    }
    const r = await chaosRun('init #3', ['init', '--config', c.config, '--timeout', '10s'], leaks, { env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(join(c.out, 'tls.crt'), 'utf8')).startsWith('cert-v2-'));
  });

  it('when the suite is done, no secret value appeared in any output or endpoint', (t) => {
    if (skip) return t.skip(skip);
    leaks.assertClean('full volume');
  });
});
