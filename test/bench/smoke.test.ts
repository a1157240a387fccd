// The bench on a tiny case (`--quick`), so it never rots: it must run end to
// end against moto and write every section with numbers. Whether the numbers
// are good is for `npm run bench` and its reader, never asserted here.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BenchResults } from './run.ts';
import { batchedCalls } from './scale.ts';
import { REPO } from '../support/cli.ts';

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function assertNumbers(where: string, row: object, keys: readonly string[]): void {
  for (const k of keys) assert.ok(isNumber((row as Record<string, unknown>)[k]), `${where}.${k} is a number: ${JSON.stringify(row)}`);
}

describe('npm run bench -- --quick', () => {
  let dir: string;
  let results: BenchResults;
  let markdown: string;
  let stdout = '';
  let stderr = '';
  let code: number | null = null;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-bench-smoke-'));
    const out = join(dir, 'results.json');
    const child = spawn(process.execPath, ['test/bench/run.ts', '--quick', `--out=${out}`], {
      cwd: REPO,
      // Each `run` also profiled (BENCH_PROFILE), so that the profiling path cannot rot either.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, BENCH_PROFILE: `cpu:${join(dir, 'prof')}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), 240_000);
    code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    clearTimeout(timer);
    assert.equal(code, 0, `bench exited ${code}:\n${stderr.slice(-4000)}`);
    results = JSON.parse(await readFile(out, 'utf8')) as BenchResults;
    markdown = await readFile(join(dir, 'results.md'), 'utf8');
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when run quick, it records the machine and the command', () => {
    assert.equal(results.meta.quick, true);
    assert.ok(results.meta.machine.nproc >= 1);
    assert.ok(results.meta.machine.cpu.length > 0);
    assert.ok(isNumber(results.meta.machine.ramGB));
    assert.match(results.meta.command, /^npm run bench/);
  });

  it('measures init for the agent, the minimal SDK script and the aws-cli loop, with API calls', () => {
    const init = results.init;
    assert.ok(init && !('error' in init), JSON.stringify(init));
    const names = init.rows.map((r) => r.name).join('\n');
    assert.match(names, /secrets-agent init/);
    assert.match(names, /minimal SDK script/);
    assert.match(names, /aws-cli loop/);
    for (const r of init.rows) {
      assertNumbers(`init ${r.name}`, r, ['medianMs', 'minMs', 'maxMs', 'vsBundle']);
      assert.equal(r.apiCalls.AssumeRoleWithWebIdentity, 1, `${r.name} assumes the role once`);
    }
  });

  it('probes built-in load time per node flag set, the RSS cost of Intl, and config load time', () => {
    const p = results.probes;
    assert.ok(p && !('error' in p), JSON.stringify(p));
    assert.ok(p.builtins.length >= 2, 'at least no flags and the image flags');
    for (const b of p.builtins) assertNumbers(`probes.builtins ${b.flags}`, b, ['medianMs']);
    assertNumbers('probes.intl', p.intl, ['withoutMB', 'withMB', 'deltaMB', 'fileDeltaMB']);
    assertNumbers('probes.configLoad', p.configLoad, ['firstMs', 'reloadMs']);
  });

  it('measures start-up of version and init from source, from the bundle and with a compile or code cache, and the node floor', () => {
    const st = results.startup;
    assert.ok(st && !('error' in st), JSON.stringify(st));
    const labels = st.rows.map((r) => r.label).join('\n');
    assert.match(labels, /^version .*source/m);
    assert.match(labels, /^init .*(compile|code) cache/m);
    assert.match(labels, /^floor /m);
    for (const r of st.rows) assertNumbers(`startup ${r.label}`, r, ['medianMs', 'minMs', 'maxMs']);
  });

  it('measures memory of run, including an empty node process as the floor', () => {
    const m = results.memory;
    assert.ok(m && !('error' in m), JSON.stringify(m));
    assert.ok(m.rows.length >= 2);
    for (const r of m.rows) assertNumbers(`memory ${r.label}`, r, ['rssMB', 'hwmMB', 'anonMB', 'fileMB', 'pssMB', 'cycles', 'cpuMsPerCycle', 'rssAtTenthMB', 'anonAtTenthMB']);
    assertNumbers('memory.emptyNode', m.emptyNode, ['rssMB', 'hwmMB']);
  });

  it('measures idle CPU per hour at the default and a 1 s interval', () => {
    const idle = results.idle;
    assert.ok(idle && !('error' in idle), JSON.stringify(idle));
    assert.deepEqual(
      idle.rows.map((r) => r.interval),
      ['5m (default)', '1s', '5m (default)', '1s', '5m (default)'],
    );
    for (const r of idle.rows) assertNumbers(`idle ${r.label}`, r, ['cpuS', 'cpuSPerHour', 'wakeupsPerS', 'windowS', 'rssMB']);
    assertNumbers('idle', idle, ['cpuSPerHourDefaultWithChecks', 'cpuSPerHourImage', 'cpuSPerHourImageWithChecks']);
  });

  it('measures scale: one DescribeSecret per secret per cycle (or one ListSecrets per 10 with batchChecks), and the first render', () => {
    const s = results.scale;
    assert.ok(s && !('error' in s), JSON.stringify(s));
    assert.ok(s.rows.length >= 2);
    assert.ok(s.rows.some((r) => r.checks === 'ListSecrets'), 'a batched row');
    for (const r of s.rows) {
      assertNumbers(`scale ${r.secrets}`, r, ['firstRenderMs', 'firstRenderMsPerSecret', 'cycleMs', 'cycleCpuMs', 'cpuMsPerCheck', 'rssMB', 'hwmMB']);
      if (r.checks === 'ListSecrets') {
        assert.equal(r.cycleCalls.ListSecrets, batchedCalls(r.secrets), 'a batched cycle is one ListSecrets per 10 names (or 100 entries of their path)');
        assert.equal(r.cycleCalls.DescribeSecret, undefined, 'a batched cycle describes none');
      } else {
        assert.equal(r.cycleCalls.DescribeSecret, r.secrets, 'a cycle is one DescribeSecret per secret');
      }
      assert.equal(r.cycleCalls.GetSecretValue, undefined, 'nothing changed: no GetSecretValue');
    }
  });

  it('measures rotation propagation with and without rotationAware, and the calls per rotation', () => {
    const rot = results.rotation;
    assert.ok(rot && !('error' in rot), JSON.stringify(rot));
    assert.equal(rot.rows.length, 2);
    for (const r of rot.rows) {
      assertNumbers(`rotation ${r.mode}`, r, ['fileP50Ms', 'fileP99Ms', 'notifyP50Ms', 'notifyP99Ms', 'getSecretValuePerRotation']);
    }
  });

  it('derives the AWS cost table from the measured calls', () => {
    const cost = results.cost;
    assert.ok(cost);
    assert.ok(cost.rows.length >= 3);
    for (const r of cost.rows) assertNumbers(`cost ${r.strategy}`, r, ['callsPerSecretPerDay', 'dollarsPerMonth', 'rotationLagP99S']);
  });

  it('prints every section as a table, and writes the same next to the JSON', () => {
    for (const title of ['1. Init latency', '2. Memory', '3. Idle cost', '4. Scale', '5. Rotation propagation', '6. AWS cost']) {
      assert.ok(stdout.includes(`### ${title}`), `stdout has ${title}`);
      assert.ok(markdown.includes(`### ${title}`), `the .md has ${title}`);
    }
    assert.doesNotMatch(markdown, /FAILED/);
  });

  it('with BENCH_PROFILE=cpu:<dir>, every run writes a CPU profile, which profile-summary.ts charges to packages and to the agent\'s functions', async () => {
    const profiles = (await readdir(join(dir, 'prof'))).filter((f) => f.endsWith('.cpuprofile'));
    assert.ok(profiles.length >= 3, `one profile per run: ${profiles.join(', ')}`);
    const summary = (...args: string[]): { code: number | null; stdout: string } => {
      const r = spawnSync(process.execPath, ['test/bench/profile-summary.ts', ...args], { cwd: REPO, encoding: 'utf8' });
      return { code: r.status, stdout: r.stdout };
    };
    const file = join(dir, 'prof', profiles[0] as string);
    assert.match(summary(file).stdout, /^busy ms per 250 ms/);
    const all = summary(file, '--from=0', '--to=1e12');
    assert.equal(all.code, 0);
    assert.match(all.stdout, /^total: [\d.]+ ms CPU\n-- by package/);
    assert.match(all.stdout, /\n\s+[\d.]+ {2}agent\/[a-z]+\n/, `the agent's own code among the packages (mapped through the source map):\n${all.stdout}`);
    assert.equal(summary().code, 2, 'usage without a file');
  });

  it('with test/support/alloc-probe.mjs, a process writes its allocations (freed ones too), which profile-summary.ts sums', async () => {
    const out = join(dir, 'alloc');
    const probe = spawnSync(process.execPath, ['--import', './test/support/alloc-probe.mjs', '-e', 'const a = []; for (let i = 0; i < 2e5; i++) a.push({ i }); a.length = 0;'], {
      cwd: REPO,
      env: { ...process.env, ALLOC_PROBE_DIR: out, ALLOC_PROBE_AFTER_MS: '0' },
      encoding: 'utf8',
    });
    assert.equal(probe.status, 0, probe.stderr);
    const file = (await readdir(out)).find((f) => f.endsWith('.heapprofile'));
    assert.ok(file, `a .heapprofile in ${out}`);
    const summary = spawnSync(process.execPath, ['test/bench/profile-summary.ts', join(out, file)], { cwd: REPO, encoding: 'utf8' });
    const mb = Number(/^total: ([\d.]+) MB allocated/.exec(summary.stdout)?.[1]);
    assert.ok(mb > 1, `2e5 small objects are megabytes allocated: ${summary.stdout}`);
  });
});
