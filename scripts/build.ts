// `npm run build`: bundle the agent into one file, dist/secrets-agent.mjs, that
// runs with plain Node 24 and no node_modules. That file is what the container
// image runs (see Dockerfile) and what test/bundle.test.ts runs from an empty dir.
//
//   node scripts/build.ts             build, print the size and the biggest inputs
//   node scripts/build.ts --measure   also time start-up (source vs bundle vs
//                                     bundle + Node's compile cache, median of 10)
//                                     and the RSS of `run` with 10 secrets, with
//                                     and without the Dockerfile's node flags
//
// Choices (numbers from this machine; --measure prints start-up and memory):
// - ESM, platform node, target node24: one file to read and compile instead of
//   resolving and loading ~1000 modules. `init` (what a pod runs) starts ~40%
//   faster than from source. `version` does not: from source it loads only
//   main.ts and pino, while the bundle always compiles the whole file.
// - Minified: 1.25 MiB instead of 2.6 MiB; the start-up difference is within
//   the noise here, the smaller file is kept.
// - `mainFields: module,main`: the AWS SDK and smithy ship ESM builds (dist-es)
//   that tree-shake better than their CJS builds: 1.25 MiB instead of 1.37 MiB.
// - No source map inside the file (an inline map would double its size and be
//   parsed at every start); an external map sits next to it for decoding stack
//   traces by hand, and is not shipped in the image.
// - The CJS packages in the bundle (pino, prom-client, parts of the SDK) call
//   `require("node:os")` etc.; esbuild's ESM output has no `require`, so the
//   banner defines one with createRequire. Without it the bundle dies at load
//   with 'Dynamic require of "node:os" is not supported'.
// - Node's compile cache (module.enableCompileCache / NODE_COMPILE_CACHE) is NOT
//   built in: called from inside a one-file bundle it comes too late (the file
//   is already compiled), and in a pod every init container starts with an empty
//   cache, so it would only help a restarted sidecar. --measure shows what it
//   would buy with a warm cache.
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { build, type Metafile, type Plugin } from 'esbuild';
import { builtinModules, createRequire } from 'node:module';

const nodeRequire = createRequire(import.meta.url);

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const ENTRY = join(ROOT, 'agent', 'main.ts');
/** The bundle's name matters: agent/main.ts runs itself only when argv[1] ends in main.ts, secrets-agent or secrets-agent.mjs. */
export const BUNDLE = join(ROOT, 'dist', 'secrets-agent.mjs');

// Defines `require` for the CJS packages inside the bundle (see above).
const REQUIRE_SHIM = "import{createRequire as __secretsAgentRequire}from'node:module';const require=__secretsAgentRequire(import.meta.url);";

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Every Node built-in that the bundled code imports (ESM `import ... from
 * 'node:x'`) becomes a CommonJS module inside the bundle, for two reasons:
 *
 * - require() has no facade. An ESM import of node:http makes Node build a
 *   facade of every export, which reads its lazy getters and so loads undici
 *   (fetch) at start-up: ~45 ms and ~13 MB of peak RSS for a module the agent
 *   never uses.
 * - It is loaded on first use, not at start-up. The SDK imports node:http2 and
 *   node:zlib (for HTTP/2 and CRC32 checksums the agent never asks for), the
 *   https handler is only needed for an https endpoint, child_process only for
 *   an `exec` notify target. Each such built-in is an object with the export
 *   names the build's own Node (the same major version, pinned in
 *   package-lock.json) lists for it, each a getter that requires the real
 *   module the first time any of them is read. Code that reads an export at
 *   load time (`class X extends Writable`) loads that module at once, as before.
 *   Modules whose export is itself a function (events, stream, assert) are
 *   required at once: a getter object cannot be called.
 *
 * `require()` calls in bundled CommonJS packages stay plain requires.
 * (Measured by `npm run bench -- --only=init,memory`: docs/performance.md.)
 */
export const builtinsViaRequire: Plugin = {
  name: 'builtins-via-require',
  setup(b) {
    const filter = new RegExp(`^(?:node:.+|${builtinModules.map(escapeRe).join('|')})$`);
    b.onResolve({ filter }, (args) => (args.kind === 'require-call' ? { path: args.path, external: true } : { path: args.path, namespace: 'builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({ contents: builtinModuleSource(args.path), loader: 'js' }));
  },
};

/** Always loaded by Node itself before any user code: nothing to defer. */
const LOADED_BY_NODE = new Set(['process', 'buffer', 'events', 'timers', 'url', 'util', 'path', 'fs', 'module', 'os']);

/** The bundle's CommonJS stand-in for built-in `id`: lazy where that is safe (see builtinsViaRequire). */
export function builtinModuleSource(id: string): string {
  const name = id.startsWith('node:') ? id.slice(5) : id;
  const eager = `module.exports = require(${JSON.stringify(id)});`;
  if (LOADED_BY_NODE.has(name.split('/')[0] ?? name)) return eager;
  let real: unknown;
  try {
    real = nodeRequire(id);
  } catch {
    return eager;
  }
  if (typeof real !== 'object' || real === null) return eager;
  const keys = Object.getOwnPropertyNames(real).filter((k) => k !== '__proto__');
  return [
    `let m;`,
    `const load = () => (m ??= require(${JSON.stringify(id)}));`,
    `const lazy = {};`,
    `for (const k of ${JSON.stringify(keys)}) Object.defineProperty(lazy, k, { enumerable: true, get: () => load()[k], set: (v) => { load()[k] = v; } });`,
    `module.exports = lazy;`,
  ].join('\n');
}

export interface BuildResult {
  outfile: string;
  /** Size of the bundle in bytes. */
  bytes: number;
  /** Bytes each package (or "agent" for our own code) contributes to the bundle, largest first. */
  inputs: Array<{ name: string; bytes: number }>;
}

/** Bundle agent/main.ts into `outfile` (default dist/secrets-agent.mjs) with an external source map next to it. */
export async function buildBundle(outfile: string = BUNDLE): Promise<BuildResult> {
  const result = await build({
    entryPoints: [ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    mainFields: ['module', 'main'],
    minify: true,
    // 'external': the .map file is written but the bundle does not point at it,
    // so the one file stays self-contained.
    sourcemap: 'external',
    // agent/main.ts starts with `#!/usr/bin/env node`; esbuild keeps an entry's
    // hashbang as the first line, above this banner (checked below).
    banner: { js: REQUIRE_SHIM },
    plugins: [builtinsViaRequire],
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
    // Written below, each file to a temp name then renamed: a test or a shell reading
    // dist/secrets-agent.mjs while another build runs sees the old file or the new one,
    // never a half-written one.
    write: false,
  });
  for (const f of result.outputFiles) {
    const tmp = `${f.path}.tmp-${process.pid}`;
    await mkdir(dirname(f.path), { recursive: true });
    await writeFile(tmp, f.contents, { mode: f.path.endsWith('.mjs') ? 0o755 : 0o644 });
    await rename(tmp, f.path);
  }
  const head = (await readFile(outfile, 'utf8')).slice(0, 200);
  if (!head.startsWith('#!/usr/bin/env node\n')) throw new Error(`${outfile} does not start with #!/usr/bin/env node`);
  const { size } = await stat(outfile);
  return { outfile, bytes: size, inputs: contributions(result.metafile, outfile) };
}

function contributions(meta: Metafile, outfile: string): BuildResult['inputs'] {
  const out = Object.entries(meta.outputs).find(([name]) => join(process.cwd(), name) === outfile || name.endsWith('secrets-agent.mjs'));
  const totals = new Map<string, number>();
  for (const [path, { bytesInOutput }] of Object.entries(out?.[1].inputs ?? {})) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
    const name = m?.[1] ?? 'agent';
    totals.set(name, (totals.get(name) ?? 0) + bytesInOutput);
  }
  return [...totals].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes);
}

export interface StartupTiming {
  label: string;
  /** Median wall time from spawn to exit, in milliseconds. */
  medianMs: number;
  runs: number;
}

interface Variant {
  label: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

function timeOnce(v: Variant): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, v.args, { env: v.env, stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${v.label}: exited ${r.status}: ${r.stderr.toString().slice(0, 2000)}`);
  return ms;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/**
 * A temp dir with a config of 10 secrets on the local file source, each rendered
 * with templates/dotenv.liquid into its own file: what `init` and `run` do in a
 * pod, minus the network. `server` is on a free loopback port.
 */
async function fixture(): Promise<{ dir: string; config: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-measure-'));
  const ids = Array.from({ length: 10 }, (_, i) => i);
  await writeFile(
    join(dir, 'secrets.yaml'),
    ids.map((i) => `measure/s${i}: {username: user${i}, password: "${'p'.repeat(32)}", host: db${i}.internal, port: 5432, dbname: app}\n`).join(''),
  );
  const config = join(dir, 'config.yaml');
  await writeFile(
    config,
    [
      'source: {type: file, path: secrets.yaml}',
      'outputDir: out',
      'secrets:',
      ...ids.map((i) => `  s${i}: {id: measure/s${i}}`),
      'files:',
      ...ids.map((i) => `  - {path: s${i}.env, templateFile: ${JSON.stringify(join(ROOT, 'templates', 'dotenv.liquid'))}, secret: s${i}}`),
      'server: {listen: "127.0.0.1:0"}',
      '',
    ].join('\n'),
  );
  return { dir, config, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Start-up of `version` and of `init` (10 secrets, file source) from source, from
 * the bundle, and from the bundle with a warm compile cache; `node -e 0` as the
 * floor. Each variant runs once unmeasured (which fills the cache), then `runs`
 * times, round-robin so that load from other processes on the machine falls on
 * every variant alike; medians are reported.
 */
export async function measureStartup(bundle: string = BUNDLE, runs = 10): Promise<StartupTiming[]> {
  const cache = await mkdtemp(join(tmpdir(), 'sa-compile-cache-'));
  const fx = await fixture();
  try {
    const plain = { ...process.env, NODE_COMPILE_CACHE: undefined };
    const cached = { ...plain, NODE_COMPILE_CACHE: cache };
    const init = ['init', '--config', fx.config, '--log-level', 'warn'];
    const variants: Variant[] = [
      { label: 'version  source  (node agent/main.ts)', args: [ENTRY, 'version'], env: plain },
      { label: 'version  bundle  (node dist/secrets-agent.mjs)', args: [bundle, 'version'], env: plain },
      { label: 'version  bundle + warm compile cache (NODE_COMPILE_CACHE)', args: [bundle, 'version'], env: cached },
      { label: 'init     source  (10 secrets, file source)', args: [ENTRY, ...init], env: plain },
      { label: 'init     bundle', args: [bundle, ...init], env: plain },
      { label: 'init     bundle + warm compile cache', args: [bundle, ...init], env: cached },
      { label: 'floor    node -e 0', args: ['-e', '0'], env: plain },
    ];
    for (const v of variants) timeOnce(v);
    const times = variants.map((): number[] => []);
    for (let i = 0; i < runs; i++) variants.forEach((v, j) => times[j]!.push(timeOnce(v)));
    return variants.map((v, j) => ({ label: v.label, medianMs: Math.round(median(times[j]!) * 10) / 10, runs }));
  } finally {
    await fx.cleanup();
    await rm(cache, { recursive: true, force: true });
  }
}

/** The node flags of the Dockerfile's ENTRYPOINT (between the node binary and the script). */
export async function dockerNodeFlags(): Promise<string[]> {
  const m = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  if (!m) throw new Error('Dockerfile: no ENTRYPOINT in exec form');
  return (JSON.parse(m[1]!) as string[]).slice(1, -1);
}

export interface MemorySample {
  label: string;
  /** Resident set size (`ps -o rss`) in KiB, median of the runs. */
  rssKiB: number;
}

/**
 * RSS of the sidecar (`run`, 10 secrets, file source) per set of node flags, read
 * with `ps -o rss` 3 s after the first render (two /metrics scrapes in between,
 * as Prometheus would), median of `runs` starts.
 */
export async function measureMemory(bundle: string, flagSets: Record<string, string[]>, runs = 3): Promise<MemorySample[]> {
  const fx = await fixture();
  try {
    const samples: MemorySample[] = [];
    for (const [label, flags] of Object.entries(flagSets)) {
      const values: number[] = [];
      for (let i = 0; i < runs; i++) values.push(await rssOfRun([...flags, bundle, 'run', '--config', fx.config]));
      samples.push({ label, rssKiB: median(values) });
    }
    return samples;
  } finally {
    await fx.cleanup();
  }
}

async function rssOfRun(args: string[]): Promise<number> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        if (/first render complete/.test(log) && /serving \/metrics/.test(log)) resolve();
      });
      child.once('exit', (code) => reject(new Error(`run exited ${code}: ${log.slice(-2000)}`)));
    });
    const address = /"address":"([^"]+)"/.exec(log)?.[1];
    for (let i = 0; i < 2; i++) {
      await sleep(1000);
      await (await fetch(`http://${address}/metrics`)).text();
    }
    await sleep(1000);
    const ps = spawnSync('ps', ['-o', 'rss=', '-p', String(child.pid)], { encoding: 'utf8' });
    const rss = Number(ps.stdout.trim());
    if (!Number.isFinite(rss) || rss <= 0) throw new Error(`ps -o rss gave "${ps.stdout.trim()}"`);
    return rss;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const kib = (n: number): string => `${(n / 1024).toFixed(0)} KiB`;

if (import.meta.main) {
  const result = await buildBundle();
  console.log(`built ${relative(process.cwd(), result.outfile)}: ${kib(result.bytes)} (${result.bytes} bytes), ESM, node24, minified`);
  console.log(`  largest inputs: ${result.inputs.slice(0, 6).map((i) => `${i.name} ${kib(i.bytes)}`).join(', ')}`);
  if (process.argv.includes('--measure')) {
    console.log(`start-up, median of 10 runs (${process.version}):`);
    for (const t of await measureStartup(result.outfile)) console.log(`  ${t.medianMs.toFixed(1).padStart(7)} ms  ${t.label}`);
    const flags = await dockerNodeFlags();
    console.log('memory of `run`, 10 secrets, file source, ps -o rss 3 s after the first render (median of 3):');
    const samples = await measureMemory(result.outfile, { 'node (no flags)': [], [`node ${flags.join(' ')} (the Dockerfile's ENTRYPOINT)`]: flags });
    for (const m of samples) console.log(`  ${(m.rssKiB / 1024).toFixed(1).padStart(7)} MiB  ${m.label}`);
  }
}
