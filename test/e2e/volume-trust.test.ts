// The sidecar keeps the volume it serves (issue 22, items 1 and 2), seen as a
// user sees it: the real CLI (`run`, `init`) on the file source, real files,
// real signals (SIGSTOP/SIGCONT stand for a stalled sidecar), /readyz, /healthz
// and /metrics over real HTTP.
// - The volume lock removed while another agent writes: the sidecar takes the
//   lock back and restores its files; a lock held by another live agent makes
//   it not ready (saying why) until it is free again.
// - Files of the live generation removed or chmod-ed, a link removed: restored
//   within one interval, counted in secrets_agent_volume_repairs_total.
// - The wall clock stepped back or forward (test/support/clock-shift.mjs, a
//   preload that shifts Date only): checks go on at their interval, /healthz
//   stays 200.
// Every secret carries the canary; it must appear in no log or endpoint.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, readlink, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CANARY, Leaks, chaosRun, cleanEnv, clockShift, get, metric } from '../support/chaos-harness.ts';
import { serverUrl, startAgent, type RunningAgent, type RunOptions } from '../support/cli.ts';
import { stopAll } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const dirs: string[] = [];
const agents: RunningAgent[] = [];
const leaks = new Leaks();
after(async () => {
  // SIGCONT first: a stopped agent cannot act on SIGTERM.
  for (const a of agents) a.child.kill('SIGCONT');
  await stopAll(agents);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A project: secrets.json (every value carries the canary) and a `run` config writing api.txt and db.env to out/. */
async function project(interval = '500ms'): Promise<{ dir: string; out: string; config: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-volume-trust-'));
  dirs.push(dir);
  await writeFile(join(dir, 'secrets.json'), JSON.stringify({ api: `api-${CANARY}`, db: { user: 'u', pass: `p-${CANARY}` }, other: `other-${CANARY}` }));
  const config = join(dir, 'config.yaml');
  await writeFile(
    config,
    `source: { type: file, path: secrets.json }
outputDir: out
refresh: { interval: ${interval}, jitter: 0 }
secrets:
  api: { id: api }
  db: { id: db }
files:
  - path: api.txt
    secret: api
  - path: conf/db.env
    template: "PASS={{ secrets.db.pass }}\\n"
notify:
  - exec: ["/bin/sh", "-c", ${JSON.stringify(`echo "$SECRETS_AGENT_CHANGED_FILES" >> ${join(dir, 'notified')}`)}]
server: { listen: "127.0.0.1:0" }
`,
  );
  return { dir, out: join(dir, 'out'), config };
}

const EXPECTED = { 'api.txt': `api-${CANARY}`, 'conf/db.env': `PASS=p-${CANARY}\n` };

async function start(config: string, label: string, options: RunOptions = {}): Promise<{ agent: RunningAgent; url: string }> {
  const agent = startAgent(['run', '--config', config], { env: cleanEnv(options.env as Record<string, string> | undefined), ...(options.nodeFlags ? { nodeFlags: options.nodeFlags } : {}) });
  agents.push(agent);
  leaks.watch(label, agent);
  const url = await serverUrl(agent);
  await waitUntil(`${label} ready`, async () => (await get(`${url}/readyz`, leaks)).status === 200, 20_000);
  return { agent, url };
}

/** The run's files are what the volume serves: links into ..data, the bytes, mode 0400 (the default). */
async function servesExpected(out: string): Promise<boolean> {
  try {
    for (const [p, want] of Object.entries(EXPECTED)) {
      const top = p.split('/')[0]!;
      if ((await readlink(join(out, top))) !== `..data/${top}`) return false;
      if ((await readFile(join(out, p), 'utf8')) !== want) return false;
      if (((await stat(join(out, p))).mode & 0o777) !== 0o400) return false;
    }
    return true;
  } catch {
    return false;
  }
}

async function metricOf(url: string, name: string): Promise<number> {
  return metric((await get(`${url}/metrics`, leaks)).body, name) ?? 0;
}

async function leaseHolder(out: string): Promise<number | undefined> {
  try {
    return (JSON.parse(await readFile(join(out, '..lock'), 'utf8')) as { pid?: number }).pid;
  } catch {
    return undefined;
  }
}

describe('the sidecar keeps its volume (issue 22)', { concurrency: true }, () => {
  it('a volume lock removed while the sidecar stalls lets `init` with another config write; the sidecar takes the lock back and restores its files, counted', async () => {
    const p = await project();
    const { agent, url } = await start(p.config, 'sidecar');
    assert.ok(await servesExpected(p.out));
    // Another config on the same volume: one file from another secret.
    const otherConfig = join(p.dir, 'other.yaml');
    await writeFile(otherConfig, 'source: { type: file, path: secrets.json }\noutputDir: out\nsecrets:\n  other: { id: other }\nfiles:\n  - path: other.txt\n    secret: other\n');
    agent.child.kill('SIGSTOP');
    try {
      await unlink(join(p.out, '..lock')); // a clean-up job, an operator
      const init = await chaosRun('init with another config', ['init', '--config', otherConfig], leaks, { env: cleanEnv() });
      assert.equal(init.code, 0, init.stderr);
      assert.equal(await readFile(join(p.out, 'other.txt'), 'utf8'), `other-${CANARY}`, 'the other agent did write the volume');
      assert.equal(await servesExpected(p.out), false);
    } finally {
      agent.child.kill('SIGCONT');
    }
    await waitUntil('the sidecar restored its files', () => servesExpected(p.out), 15_000);
    await waitUntil('other.txt is gone', async () => (await readlink(join(p.out, 'other.txt')).catch(() => undefined)) === undefined, 5000);
    assert.equal(await leaseHolder(p.out), agent.child.pid, 'the sidecar holds the lock again');
    await waitUntil('the repair counted', async () => (await metricOf(url, 'secrets_agent_volume_repairs_total')) >= 1, 3000);
    assert.ok((await metricOf(url, 'secrets_agent_volume_lock_lost_total')) >= 1, 'the lost lease is counted');
    assert.match(agent.output().stderr, /the volume lock on .* was not this agent's any more/);
    assert.equal((await get(`${url}/readyz`, leaks)).status, 200);
    assert.deepEqual(leaks.findings(), []);
  });

  it('a volume lock taken by another live agent: /readyz 503 saying so, nothing written; once it is released the sidecar takes it back and undoes what happened meanwhile', async () => {
    const p = await project();
    const { agent, url } = await start(p.config, 'sidecar');
    // Another agent's lease (another host: only its mtime tells whether it lives), put in place atomically.
    const lease = JSON.stringify({ pid: 4242, host: 'another-node', since: new Date().toISOString() });
    await writeFile(join(p.dir, 'lease.tmp'), lease);
    await rename(join(p.dir, 'lease.tmp'), join(p.out, '..lock'));
    await waitUntil('not ready', async () => (await get(`${url}/readyz`, leaks)).status === 503, 10_000);
    const ready = await get(`${url}/readyz`, leaks);
    assert.match(ready.body, /volume lock lost: .*another agent holds it \(pid 4242 on host another-node/);
    assert.equal(await metricOf(url, 'secrets_agent_ready'), 0);
    assert.match(agent.output().stderr, /"level":"error".*the volume lock on .* was lost/);
    // Meanwhile "the other agent" changes a file of the live generation; the sidecar, not holding the lock, leaves it.
    const data = await readlink(join(p.out, '..data'));
    await chmod(join(p.out, data, 'api.txt'), 0o600);
    await sleep(1500); // three intervals: no write while the lock is another's
    assert.equal((await stat(join(p.out, data, 'api.txt'))).mode & 0o777, 0o600, 'nothing written while another agent holds the lock');
    assert.equal(await readFile(join(p.out, '..lock'), 'utf8'), lease, 'the other agent\'s lease is left alone');
    // The other agent releases the lock.
    await unlink(join(p.out, '..lock'));
    await waitUntil('ready again', async () => (await get(`${url}/readyz`, leaks)).status === 200, 10_000);
    await waitUntil('the file restored', () => servesExpected(p.out), 10_000);
    assert.equal(await leaseHolder(p.out), agent.child.pid);
    assert.equal(await metricOf(url, 'secrets_agent_ready'), 1);
    assert.deepEqual(leaks.findings(), []);
  });

  it('a link removed and a file of the live generation chmod-ed or removed are restored by the next verify rounds, counted, and the app notified', async () => {
    const p = await project('1s');
    const { url } = await start(p.config, 'sidecar');
    const before = await metricOf(url, 'secrets_agent_volume_repairs_total');
    const data = await readlink(join(p.out, '..data'));
    await unlink(join(p.out, 'api.txt'));
    await waitUntil('the link restored', () => servesExpected(p.out), 5000);
    await chmod(join(p.out, data, 'conf', 'db.env'), 0o000);
    await waitUntil('the mode restored', () => servesExpected(p.out), 5000);
    await unlink(join(p.out, await readlink(join(p.out, '..data')), 'api.txt'));
    await waitUntil('the file restored', () => servesExpected(p.out), 5000);
    // The count follows the write that restored the files: wait for it, briefly.
    await waitUntil('every repair counted', async () => (await metricOf(url, 'secrets_agent_volume_repairs_total')) >= before + 3, 3000);
    // The app is told about the files restored, as after any change.
    await waitUntil('the app notified of api.txt and conf/db.env', async () => /api\.txt/.test(await readOr(join(p.dir, 'notified'))) && /conf\/db\.env/.test(await readOr(join(p.dir, 'notified'))), 5000);
    assert.deepEqual(leaks.findings(), []);
  });

  for (const [step, label] of [
    [-3_600_000, 'back'],
    [3_600_000, 'forward'],
  ] as const) {
    it(`the wall clock stepped ${label} one hour: checks go on at their interval (no pause, no burst), /healthz stays 200, the volume is still verified`, async () => {
      const p = await project();
      const shift = clockShift(join(p.dir, 'clock-offset'));
      const { url } = await start(p.config, `sidecar (clock ${label})`, { env: shift.env, nodeFlags: shift.nodeFlags });
      const checks = () => metricOf(url, 'secrets_agent_secret_checks_total');
      await waitUntil('checks running', async () => (await checks()) >= 4, 10_000);
      await writeFile(shift.file, String(step));
      await sleep(100); // the preload reads the offset every 20 ms
      // /healthz right after the step, then for a while: always 200.
      const health: number[] = [];
      for (let i = 0; i < 10; i++) {
        health.push((await get(`${url}/healthz`, leaks)).status);
        await sleep(50);
      }
      assert.deepEqual(health.filter((s) => s !== 200), [], `/healthz after the step: ${health.join(',')}`);
      const after = await checks();
      await sleep(3000);
      const made = (await checks()) - after;
      // 2 secrets every 500 ms for 3 s: 12; a pause makes 0, a burst many more.
      assert.ok(made >= 6, `checks stopped after the step: ${made} in 3 s`);
      assert.ok(made <= 20, `a burst of checks after the step: ${made} in 3 s`);
      await unlink(join(p.out, 'api.txt'));
      await waitUntil('still verified', () => servesExpected(p.out), 5000);
      assert.deepEqual(leaks.findings(), []);
    });
  }
});
