// The limits docs/templates.md promises for one template file, as a user meets
// them: the real `run` (file source: no AWS needed), a secret change that makes
// two templates run away, /healthz polled and the volume lock's lease watched
// meanwhile. Nothing is mocked.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAgent } from '../support/procs.ts';
import { waitUntil } from '../support/wait.ts';

const CANARY = 'CANARY-template-limits-5d2a';
// Loops over a secret's array: no range, so nothing for Liquid's memory limit to count; 2000^3 iterations.
const NESTED = '{% if secrets.db.mode == "runaway" %}{% for a in secrets.db.arr %}{% for b in secrets.db.arr %}{% for c in secrets.db.arr %}{% endfor %}{% endfor %}{% endfor %}{% endif %}{{ secrets.db.user }}';
// The loop of the issue (22, item 3): 22-30 s and 1.57 GB RSS on the agent's own thread before.
const RANGE = '{% if secrets.db.mode == "runaway" %}{% for i in (1..100000000) %}xxxxxxxxxx{% endfor %}{% endif %}{{ secrets.db.user }}';

const secret = (mode: string, user: string): string => `db: '${JSON.stringify({ mode, user, arr: Array.from({ length: 2000 }, (_, i) => i) })}'\n`;

describe('template limits', () => {
  let dir: string;
  let agent: RunningAgent;
  let base: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-e2e-tpl-limits-'));
    await writeFile(join(dir, 'secrets.yaml'), secret('calm', `u1-${CANARY}`));
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 300ms }
secrets:
  db: { id: db }
files:
  - path: nested
    template: '${NESTED}'
  - path: range
    template: '${RANGE}'
  - path: plain
    template: "{{ secrets.db.user }}"
server: { listen: "127.0.0.1:0" }
`,
    );
    agent = startAgent(['run', '--config', 'config.yaml', '--log-level', 'debug'], { cwd: dir });
    await agent.waitFor(/first render complete/);
    base = await serverUrl(agent);
  });

  after(async () => {
    await stopAgent(agent);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when templates run away, each fails within its bound, the last good files stay, /healthz answers within 1 s and the lease stays fresh', async () => {
    const out = join(dir, 'out');
    assert.equal(await readFile(join(out, 'nested'), 'utf8'), `u1-${CANARY}`);
    const started = performance.now();
    await writeFile(join(dir, 'secrets.yaml'), secret('runaway', `u2-${CANARY}`));

    let worstHealthz = 0;
    let worstLeaseAge = 0;
    let polls = 0;
    const deadline = started + 12_000;
    while (!/"file":"nested"[^\n]*keeping its previous content/.test(agent.output().stderr + agent.output().stdout)) {
      assert.ok(performance.now() < deadline, `the runaway template did not fail within 12 s:\n${agent.output().stderr.slice(-3000)}`);
      const t = performance.now();
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5_000) });
      worstHealthz = Math.max(worstHealthz, performance.now() - t);
      assert.equal(res.status, 200);
      const lease = await stat(join(out, '..lock'));
      worstLeaseAge = Math.max(worstLeaseAge, Date.now() - lease.mtimeMs);
      polls++;
      await sleep(100);
    }
    const failedAfter = performance.now() - started;
    const log = agent.output().stdout + agent.output().stderr;
    // Each fails on its own bound: the nested loops on time (5 s), the huge range on Liquid's memory limit at once.
    assert.match(log, /"file":"nested"[^\n]*(?:ran longer than 5 s|template render limit exceeded)/);
    assert.match(log, /"file":"range"[^\n]*memory alloc limit exceeded/);
    assert.ok(failedAfter < 9_000, `failed after ${Math.round(failedAfter)} ms (bound: 5 s + the check interval)`);
    assert.ok(polls >= 10, `only ${polls} /healthz polls`);
    assert.ok(worstHealthz < 1_000, `/healthz took ${Math.round(worstHealthz)} ms during the render`);
    // The lease is refreshed every 2 s; stale after 15 s (another agent could take the volume).
    assert.ok(worstLeaseAge < 5_000, `the lock lease was ${Math.round(worstLeaseAge)} ms old during the render`);
    // Last good files stay; the file that did render moves on.
    await waitUntil('plain renders the new value', async () => (await readFile(join(out, 'plain'), 'utf8')) === `u2-${CANARY}`);
    assert.equal(await readFile(join(out, 'nested'), 'utf8'), `u1-${CANARY}`);
    assert.equal(await readFile(join(out, 'range'), 'utf8'), `u1-${CANARY}`);
    // The agent's memory: the worker's heap is capped (64 MB); before, this render took 1.57 GB.
    const status = await readFile(`/proc/${agent.child.pid}/status`, 'utf8');
    const hwmKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
    assert.ok(hwmKb < 400 * 1024, `peak RSS ${hwmKb} kB`);
    assert.doesNotMatch(log, new RegExp(CANARY));

    // And the next change renders in a fresh worker: the bound cost nothing lasting.
    await writeFile(join(dir, 'secrets.yaml'), secret('calm', `u3-${CANARY}`));
    await waitUntil('nested renders again', async () => (await readFile(join(out, 'nested'), 'utf8')) === `u3-${CANARY}`, 15_000);
  });
});
