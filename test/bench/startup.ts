// Case 8: start-up, no network. `version` and `init` (10 secrets on the local
// file source, each rendered with templates/dotenv.liquid into its own file)
// from source, from the bundle, and from the bundle with a warm compile cache
// (made as the image's compile-cache stage makes it); `node -e 0` as the floor.
// What the bundle itself buys, apart from AWS and credentials (those are in the
// init case). Each variant runs once unmeasured, then `runs` times round-robin,
// so that load from other processes falls on every variant alike; medians.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { agentVariants, commandOf, type BenchContext, type Variant } from './fixtures.ts';
import { median, REPO, round, runToEnd } from './lib.ts';

export interface StartupRow {
  label: string;
  command: string;
  /** Median wall time from spawn to exit, ms. */
  medianMs: number;
  minMs: number;
  maxMs: number;
}

export interface StartupResult {
  secrets: number;
  runs: number;
  rows: StartupRow[];
}

/** A config of `n` secrets on the file source, each into its own dotenv file. */
async function fileSourceConfig(dir: string, n: number): Promise<string> {
  const ids = Array.from({ length: n }, (_, i) => i);
  await writeFile(
    join(dir, 'secrets.yaml'),
    ids.map((i) => `startup/s${i}: {username: user${i}, password: "${'p'.repeat(32)}", host: db${i}.internal, port: 5432, dbname: app}\n`).join(''),
  );
  const config = join(dir, 'config.yaml');
  await writeFile(
    config,
    [
      'source: {type: file, path: secrets.yaml}',
      'outputDir: out',
      'secrets:',
      ...ids.map((i) => `  s${i}: {id: startup/s${i}}`),
      'files:',
      ...ids.map((i) => `  - {path: s${i}.env, templateFile: ${JSON.stringify(join(REPO, 'templates', 'dotenv.liquid'))}, secret: s${i}}`),
      'server: {listen: ""}',
      '',
    ].join('\n'),
  );
  return config;
}

export async function startupCase(ctx: BenchContext): Promise<StartupResult> {
  const n = ctx.quick ? 2 : 10;
  const runs = ctx.quick ? 1 : 10;
  const config = await fileSourceConfig(ctx.root, n);
  const { source, bundle, cached } = agentVariants(ctx);
  const init = ['init', '--config', config, '--log-level', 'warn'];
  const rows: { label: string; command: string; variant: Variant; args: string[] }[] = [];
  for (const v of [source, bundle, cached]) rows.push({ label: `version  ${v.label}`, command: commandOf(v, 'version'), variant: v, args: ['version'] });
  for (const v of [source, bundle, cached]) rows.push({ label: `init     ${v.label}, ${n} secrets, file source`, command: commandOf(v, 'init --config config.yaml'), variant: v, args: init });
  const floor: Variant = { label: 'node -e 0', entry: '-e', flags: [], env: {} };
  rows.push({ label: 'floor    node -e 0', command: 'node -e 0', variant: floor, args: ['0'] });

  // NODE_COMPILE_CACHE off unless the variant sets it: the caller's would make every row "cached".
  const once = async (r: (typeof rows)[number]): Promise<number> => {
    const env = { ...process.env, NODE_COMPILE_CACHE: undefined, ...r.variant.env };
    const t0 = performance.now();
    await runToEnd(process.execPath, [...r.variant.flags, r.variant.entry, ...r.args], { env, timeoutMs: 60_000 });
    return performance.now() - t0;
  };
  for (const r of rows) await once(r);
  const times = rows.map((): number[] => []);
  for (let i = 0; i < runs; i++) for (const [j, r] of rows.entries()) times[j]!.push(await once(r));
  return {
    secrets: n,
    runs,
    rows: rows.map((r, j) => ({
      label: r.label,
      command: r.command,
      medianMs: round(median(times[j]!), 1),
      minMs: round(Math.min(...times[j]!), 1),
      maxMs: round(Math.max(...times[j]!), 1),
    })),
  };
}
