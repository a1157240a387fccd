// Soak: the real sidecar with the local `file` source checks ten secrets every
// 10 ms while the test rewrites the secrets file every 50 ms (so generations
// are written and swapped all along), for well over 10,000 refresh cycles.
// After a warm-up, the heap, RSS, open descriptors, active timers and handles
// must stay flat: a leak of a timer, a socket, a watcher or a few hundred bytes
// per cycle shows.
//
// The heap is read two ways: nodejs_heap_size_used_bytes from the agent's own
// /metrics (printed; it includes garbage V8 has not collected yet, so it
// wanders by tens of MiB under this allocation rate), and the heap right after
// a full GC forced inside the agent by a test-only preload
// (test/support/heap-probe.mjs: the agent refuses to start with an inspector),
// which is what the bound applies to.
// RSS is read from /proc/<pid>/status right after that GC.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunningAgent } from '../support/cli.ts';
import { CANARY, Leaks, chaosAgent, cleanEnv, get, heapAfterGc, heapProbe, listenAddress, metric, procStats, volume } from '../support/chaos-harness.ts';
import { stopAgent } from '../support/procs.ts';

const CYCLES = Number(process.env.CHAOS_SOAK_CYCLES ?? 12_000);
const WARMUP = 2_000;
/** Samples after the warm-up: the bound compares the first third with the last. */
const MIN_SAMPLES = 15;
const SECRETS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];

interface Sample {
  at: number;
  checks: number;
  writes: number;
  /** nodejs_heap_size_used_bytes from /metrics. */
  heap: number;
  /** V8 heap in use right after a forced full GC. */
  heapGc: number;
  rssKb: number;
  fds: number;
  timers: number;
  handles: number;
}

describe('soak: 10,000+ refresh cycles at a 10 ms interval', () => {
  let root: string;
  const leaks = new Leaks();
  let agent: RunningAgent | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sa-chaos-soak-'));
  });

  after(async () => {
    await stopAgent(agent);
    if (root) await rm(root, { recursive: true, force: true });
  });

  it(`when the sidecar runs ${CYCLES} refresh cycles, heap, RSS, descriptors, timers and handles stay flat`, async () => {
    const out = join(root, 'out');
    await mkdir(root, { recursive: true });
    const secrets = join(root, 'secrets.json');
    let n = 0;
    const rewrite = async () => {
      n++;
      const doc = Object.fromEntries(SECRETS.map((s, i) => [s, { v: i === n % SECRETS.length ? n : 0, body: `${CANARY}-${s}-${'z'.repeat(2000)}` }]));
      await writeFile(`${secrets}.tmp`, JSON.stringify(doc));
      await rename(`${secrets}.tmp`, secrets);
    };
    await rewrite();
    const config = join(root, 'config.yaml');
    await writeFile(
      config,
      `source: { type: file, path: ${secrets} }
outputDir: ${out}
refresh: { interval: 10ms, jitter: 0.2, rotationAware: false }
secrets:
${SECRETS.map((s) => `  ${s}: { id: ${s} }`).join('\n')}
files:
${SECRETS.map((s) => `  - path: ${s}.txt\n    template: "{{ secrets.${s}.v }} {{ secrets.${s}.body | sha256 }}"`).join('\n')}
  - path: all.json
    template: "{{ secrets | json }}"
server: { listen: "127.0.0.1:0" }
`,
    );
    const probe = heapProbe(join(root, 'heap.json'));
    agent = chaosAgent('soak', ['run', '--config', config], leaks, { env: cleanEnv(probe.env), nodeFlags: probe.nodeFlags });
    const base = await listenAddress(agent);
    await agent.waitFor(/first render complete/);
    const pid = agent.child.pid!;

    let rewriting = true;
    const rewriter = (async () => {
      while (rewriting) {
        await rewrite();
        await sleep(50);
      }
    })();

    const samples: Sample[] = [];
    const sample = async (): Promise<Sample> => {
      const text = (await get(`${base}/metrics`, leaks, 5000)).body;
      const heapGc = await heapAfterGc(probe.file);
      const s: Sample = {
        heapGc,
        at: Date.now(),
        checks: metric(text, 'secrets_agent_secret_checks_total') ?? 0,
        writes: metric(text, 'secrets_agent_files_writes_total', { result: 'success' }) ?? 0,
        heap: metric(text, 'nodejs_heap_size_used_bytes') ?? NaN,
        // A type with nothing active is not exported at all: 0.
        timers: metric(text, 'nodejs_active_resources', { type: 'Timeout' }) ?? 0,
        handles: metric(text, 'nodejs_active_handles') ?? NaN,
        ...procStats(pid),
      };
      samples.push(s);
      return s;
    };
    const t0 = Date.now();
    try {
      // At least CYCLES checks, and enough samples after the warm-up to compare thirds (a fast machine
      // runs the cycles in seconds; each sample waits for the heap probe's next forced GC, up to 1 s).
      const enough = () => samples.filter((x) => x.checks >= WARMUP).length >= MIN_SAMPLES;
      for (let s = await sample(); s.checks < CYCLES || !enough(); s = await sample()) {
        assert.equal(agent.child.exitCode, null, 'the agent died');
        assert.ok(Date.now() - t0 < 120_000, `only ${s.checks} checks after 120 s`);
        await sleep(250); // plus up to 1 s waiting for the heap probe's next sample
      }
    } finally {
      rewriting = false;
      await rewriter;
    }
    const seconds = (Date.now() - t0) / 1000;
    if (process.env.CHAOS_SOAK_DUMP) await writeFile(process.env.CHAOS_SOAK_DUMP, JSON.stringify(samples));
    const after = samples.filter((s) => s.checks >= WARMUP);
    assert.ok(after.length >= MIN_SAMPLES, `too few samples after the warm-up (${after.length})`);
    const third = Math.max(3, Math.floor(after.length / 3));
    const early = after.slice(0, third);
    const late = after.slice(-third);
    const median = (xs: Sample[], f: (s: Sample) => number) => {
      const v = xs.map(f).sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)]!;
    };
    const floor = (xs: Sample[], f: (s: Sample) => number) => Math.min(...xs.map(f));
    const peak = (xs: Sample[], f: (s: Sample) => number) => Math.max(...xs.map(f));
    const MB = 1024 * 1024;
    const pair = (f: (xs: Sample[]) => number) => [f(early), f(late)] as const;
    const heapGc = pair((xs) => median(xs, (s) => s.heapGc) / MB);
    const heap = pair((xs) => floor(xs, (s) => s.heap) / MB);
    const rss = pair((xs) => median(xs, (s) => s.rssKb) / 1024);
    const fds = pair((xs) => peak(xs, (s) => s.fds));
    const timers = pair((xs) => peak(xs, (s) => s.timers));
    const handles = pair((xs) => peak(xs, (s) => s.handles));
    const last = samples.at(-1)!;
    const f1 = (x: number) => x.toFixed(1);
    const delta = ([a, b]: readonly [number, number]) => `${f1(a)} -> ${f1(b)} MiB (${b - a >= 0 ? '+' : ''}${f1(b - a)})`;
    const cycles = last.checks - median(early, (s) => s.checks);
    process.stdout.write(
      `# soak: ${last.checks} refresh cycles (checks) and ${last.writes} generations written in ${f1(seconds)} s; after a ${WARMUP}-cycle warm-up, first third -> last third of ${after.length} samples: ` +
        `heap after GC ${delta(heapGc)} = ${Math.round(((heapGc[1] - heapGc[0]) * MB) / cycles)} bytes/cycle, RSS after GC ${delta(rss)}, ` +
        `/metrics heap used (floor, with uncollected garbage) ${delta(heap)}, open fds ${fds[0]} -> ${fds[1]}, timers ${timers[0]} -> ${timers[1]}, handles ${handles[0]} -> ${handles[1]}\n`,
    );
    assert.ok(last.checks >= 10_000);
    assert.ok(last.writes >= 100, `only ${last.writes} generations were written`);
    // Bounds: a leak of ~300 bytes per cycle would add 3 MiB of live heap over 10,000 cycles.
    assert.ok(heapGc[1] - heapGc[0] < 3, `live heap grew ${f1(heapGc[1] - heapGc[0])} MiB`);
    assert.ok(rss[1] - rss[0] < 16, `RSS grew ${f1(rss[1] - rss[0])} MiB`);
    assert.ok(fds[1] - fds[0] <= 3, `open descriptors grew from ${fds[0]} to ${fds[1]}`);
    assert.ok(timers[1] - timers[0] <= 2, `active timers grew from ${timers[0]} to ${timers[1]}`);
    assert.ok(handles[1] - handles[0] <= 2, `active handles grew from ${handles[0]} to ${handles[1]}`);

    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    assert.doesNotMatch(agent.output().stderr, /unhandled|"level":"fatal"|"level":"error"/i);
    const v = await volume(out);
    assert.deepEqual(v.reserved, ['..data', v.data].sort(), 'leftovers after the soak');
  });

  it('when the suite is done, no secret value appeared in any output or endpoint', () => {
    leaks.assertClean('soak');
  });
});
