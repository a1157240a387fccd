// Case 1: init latency. `init` with 10 secrets against moto on loopback, web
// identity included, beside what users would run instead: a minimal SDK script
// (the floor; also bundled, as the agent is) and an aws-cli loop. Rounds
// alternate the variants (each round starting at a different one) so that
// machine noise spreads evenly; one untimed warm-up round goes through the
// recording proxy to count the API calls of each.
import { existsSync, statfsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startProxy } from '../support/proxy.ts';
import { buildMinimal } from './bundles.ts';
import { agentVariants, extraFlagSets, withFlags, awsCli, awsEnv, commandOf, createSecrets, Tally, writeConfig, type BenchContext, type Created, type Variant } from './fixtures.ts';
import { median, REPO, round, runToEnd } from './lib.ts';

export interface InitRow {
  name: string;
  command: string;
  runs: number[];
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** median / the bundle's median. */
  vsBundle: number;
  /** API calls of one run, by operation (counted at the proxy in the warm-up round). */
  apiCalls: Record<string, number>;
}

export interface InitResult {
  secrets: number;
  rounds: number;
  /** The row ratios are relative to. */
  base: string;
  /** The variant as the example init container runs it. */
  recommended: string;
  rows: InitRow[];
  notes: string[];
}

interface Runner {
  name: string;
  command: string;
  /** Spawn one run writing into outDir against url; returns its command line. */
  argv(outDir: string, url: string): Promise<Argv> | Argv;
  /** The bytes this variant is expected to write for a value. */
  expect(value: string): string;
  /** The agent (creates its own output dir). */
  agent?: boolean;
  /** Seconds per run: its warm-up run (through the proxy, which costs it ~nothing) is its first timed run. */
  slow?: boolean;
}

interface Argv {
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

const local = (s: Created): string => s.id.split('/').pop() as string;

/** statfs f_type of tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

export async function initCase(ctx: BenchContext): Promise<InitResult> {
  const n = ctx.quick ? 2 : 10;
  // Quick: the warm-up run is the only (timed) run.
  const rounds = ctx.quick ? 0 : Number(process.env.BENCH_INIT_ROUNDS ?? 21);
  const notes: string[] = [];
  const secrets: Created[] = await createSecrets(
    ctx.moto,
    Array.from({ length: n }, (_, i) => `bench/init/s${String(i).padStart(2, '0')}`),
  );
  const ids = secrets.map((s) => s.id);
  // Output on tmpfs when the machine has one (/dev/shm), as in a pod (emptyDir
  // medium: Memory): there fsync costs nothing, on a disk it costs the agent's
  // atomic writer a few ms that the scripts (no fsync) do not pay.
  const shm = existsSync('/dev/shm') && statfsSync('/dev/shm').type === TMPFS_MAGIC;
  const base = shm ? await mkdtemp('/dev/shm/secrets-agent-bench-init-') : join(ctx.root, 'init');
  notes.push(shm ? 'outputs written to tmpfs (/dev/shm), as to a pod\'s emptyDir with medium: Memory' : 'outputs written to disk (no /dev/shm tmpfs here): the agent fsyncs, the scripts do not');
  try {
    let runNo = 0;
    const fresh = async (): Promise<string> => {
      const dir = join(base, `run-${runNo++}`);
      await mkdir(dir, { recursive: true });
      return dir;
    };
    const agentRunner = (v: Variant): Runner => ({
      name: `secrets-agent init: ${v.label}`,
      command: commandOf(v, 'init --config config.yaml'),
      async argv(outDir, url) {
        const config = await writeConfig(outDir, {
          outputDir: join(outDir, 'out'),
          secrets: secrets.map((s) => ({ name: local(s), id: s.id })),
          files: secrets.map((s) => `  - { path: ${local(s)}, secret: ${local(s)} }`),
          server: false,
        });
        return { cmd: process.execPath, args: [...v.flags, v.entry, 'init', '--config', config, '--timeout', '30s'], env: awsEnv(ctx, url, { ...v.env }) };
      },
      expect: (value) => value,
      agent: true,
    });

    const av = agentVariants(ctx);
    const { bundle } = av;
    const variants = ctx.quick
      ? [bundle]
      : [
          bundle,
          av.asInitContainer,
          av.recommended,
          ...[av.candidate, av.candidateRecommended].filter((v) => v !== undefined),
          // The previous layout (plain ESM) with Node's compile cache, as the init container ran it: what the code cache replaced.
          ...(av.candidate ? [{ ...av.candidate, label: `candidate bundle as the init container would run it (compile cache, ${ctx.initFlags.join(' ')})`, flags: ctx.initFlags, env: { NODE_COMPILE_CACHE: ctx.compileCache.get(av.candidate.entry) ?? '' } }] : []),
          av.source,
        ];
    const runners: Runner[] = [...variants, ...extraFlagSets().map((f) => withFlags(bundle, f))].map(agentRunner);
    const minimal = join(REPO, 'test/bench/minimal-init.mjs');
    runners.push({
      name: 'minimal SDK script',
      command: 'node test/bench/minimal-init.mjs',
      argv: (outDir, url) => ({ cmd: process.execPath, args: [minimal, join(outDir, 'out'), ...ids], env: awsEnv(ctx, url) }),
      expect: (v) => v,
    });
    // The same script bundled like the agent: the honest floor for a bundled agent.
    const minimalBundle = await buildMinimal(ctx.root);
    if (!ctx.quick) runners.push({
      name: 'minimal SDK script (bundled)',
      command: 'node minimal-init.bundle.mjs',
      argv: (outDir, url) => ({ cmd: process.execPath, args: [minimalBundle, join(outDir, 'out'), ...ids], env: awsEnv(ctx, url) }),
      expect: (v) => v,
    });
    const cli = awsCli();
    if (cli) {
      runners.push({
        name: 'aws-cli loop',
        command: 'sh test/bench/aws-cli-init.sh',
        argv: (outDir, url) => ({
          cmd: 'sh',
          args: [join(REPO, 'test/bench/aws-cli-init.sh'), join(outDir, 'out'), ...ids],
          // aws-cli v1 reads AWS_DEFAULT_REGION, not AWS_REGION.
          env: awsEnv(ctx, url, { AWS_CLI: cli, AWS_DEFAULT_REGION: 'us-east-1' }),
        }),
        expect: (v) => v + '\n',
        slow: true,
      });
    } else {
      notes.push('aws-cli row skipped: no `aws` on PATH');
    }

    const once = async (r: Runner, url: string): Promise<{ ms: number; outDir: string }> => {
      const dir = await fresh();
      if (!r.agent) await mkdir(join(dir, 'out'));
      const { cmd, args, env } = await r.argv(dir, url);
      const t0 = performance.now();
      await runToEnd(cmd, args, { env, timeoutMs: 120_000 });
      return { ms: performance.now() - t0, outDir: join(dir, 'out') };
    };

    // Warm-up: page cache, moto's first requests; counts calls and checks the bytes.
    const proxy = await startProxy(ctx.moto.url);
    const tally = new Tally(proxy);
    const apiCalls = new Map<string, Record<string, number>>();
    const times = new Map<string, number[]>(runners.map((r) => [r.name, []]));
    try {
      for (const r of runners) {
        tally.reset();
        const { outDir, ms } = await once(r, proxy.url);
        if (rounds === 0 || r.slow) times.get(r.name)?.push(ms);
        apiCalls.set(r.name, tally.snapshot());
        for (const s of secrets) {
          const got = await readFile(join(outDir, local(s)), 'utf8');
          if (got !== r.expect(s.value)) throw new Error(`${r.name} wrote different bytes for ${s.id}`);
        }
      }
    } finally {
      await proxy.close();
    }

    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < runners.length; k++) {
        const r = runners[(round + k) % runners.length] as Runner;
        // The aws-cli loop takes seconds a run: three runs (warm-up included) are enough for its median.
        if (r.slow && round >= 2) continue;
        times.get(r.name)?.push((await once(r, ctx.moto.url)).ms);
      }
    }

    const bundleMedian = median(times.get(agentRunner(bundle).name) ?? []);
    const rows = runners.map((r): InitRow => {
      const t = times.get(r.name) ?? [];
      const m = median(t);
      return {
        name: r.name,
        command: r.command,
        runs: t.map((x) => round(x, 1)),
        medianMs: round(m, 1),
        minMs: round(Math.min(...t), 1),
        maxMs: round(Math.max(...t), 1),
        vsBundle: round(m / bundleMedian, 2),
        apiCalls: apiCalls.get(r.name) ?? {},
      };
    });
    return { secrets: n, rounds, base: bundle.label, recommended: av.asInitContainer.label, rows, notes };
  } finally {
    if (shm) await rm(base, { recursive: true, force: true });
  }
}
