// `npm run build`: bundle the agent into one file, dist/secrets-agent.mjs, that
// runs with plain Node 24 and no node_modules. That file is what the container
// image runs (see Dockerfile) and what test/artifacts/bundle.test.ts runs from an empty dir.
//
//   node scripts/build.ts             build, print the size and the biggest inputs
//
// What the bundle buys at start-up and in memory is measured by the bench, not
// here: `npm run bench -- --only=startup` (`version` and `init` from source, from
// the bundle, with a warm compile cache), `--only=init` and `--only=memory`
// (docs/performance.md).
//
// Choices (sizes as of this writing; the build prints the current one):
// - ESM, platform node, target node24: one file to read and compile instead of
//   resolving and loading ~1000 modules.
// - Minified: 912 KiB instead of 2.1 MiB; the start-up difference is within
//   the noise, the smaller file is kept.
// - `mainFields: module,main`: the AWS SDK and smithy ship ESM builds (dist-es)
//   that tree-shake better than their CJS builds: 912 KiB instead of 1,057 KiB.
// - No source map inside the file (an inline map would double its size and be
//   parsed at every start); an external map sits next to it for decoding stack
//   traces by hand, and is not shipped in the image.
// - The CJS packages in the bundle (pino, prom-client, parts of the SDK) call
//   `require("node:os")` etc.; esbuild's ESM output has no `require`, so the
//   banner defines one with createRequire. Without it the bundle dies at load
//   with 'Dynamic require of "node:os" is not supported'.
// - Node's compile cache is not switched on from inside the bundle
//   (module.enableCompileCache would run after the file is already compiled):
//   the image sets NODE_COMPILE_CACHE and ships a cache made at image build
//   time (the Dockerfile's compile-cache stage).
// - Third-party notices: the bundle inlines other people's code, so the build
//   writes dist/THIRD-PARTY-NOTICES next to it, made from the bundle's own
//   inputs (esbuild's metafile: every package that put at least one byte into
//   the output), with each package's name, version, declared license and the
//   text of its LICENSE/NOTICE files. The image (Dockerfile) and the npm
//   package (package.json `files`) ship it; test/artifacts/notices.test.ts
//   checks every package of the source map is listed.
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile, type Plugin } from 'esbuild';
import { builtinModules, createRequire } from 'node:module';

const nodeRequire = createRequire(import.meta.url);

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const ENTRY = join(ROOT, 'agent', 'main.ts');
/** The bundle runs under any name (agent/main.ts is the entry, with no check of its own name). */
export const BUNDLE = join(ROOT, 'dist', 'secrets-agent.mjs');
export const LOADER = join(ROOT, 'agent', 'loader.ts');
export const WARMUP = join(ROOT, 'scripts', 'code-cache-warmup.ts');
/** The render worker (agent/render/sandbox.ts) and the module that carries its code into the bundle. */
export const RENDER_WORKER = join(ROOT, 'agent', 'render', 'worker.ts');
const RENDER_WORKER_SOURCE = join(ROOT, 'agent', 'render', 'worker-source.ts');
/** The third-party notices, next to the bundle (thirdPartyNotices). */
export const NOTICES_NAME = 'THIRD-PARTY-NOTICES';


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
  /** sha256 of the agent's code inside it (part of the code cache's key). */
  sha256: string;
  /** Bytes each package (or "agent" for our own code) contributes to the bundle, largest first. */
  inputs: Array<{ name: string; bytes: number }>;
}

/** Separates the loader from the code in dist/secrets-agent.mjs (agent/loader.ts finds it; a real newline on each side). */
export const CODE_MARKER = '\n//# secrets-agent code: each line below starts with //\n';
/**
 * agent/render/worker.ts as one CommonJS script (ASCII, minified), for
 * `new Worker(code, { eval: true })`: the bundle stays one file. Its
 * `import.meta.url` is only used unbundled (sandbox.ts, never run in the worker).
 */
export async function buildRenderWorker(): Promise<string> {
  const result = await build({
    entryPoints: [RENDER_WORKER],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    minify: true,
    define: { 'import.meta.url': 'undefined' },
    legalComments: 'none',
    logLevel: 'warning',
    write: false,
  });
  return asciiSource(result.outputFiles[0]!.text);
}

/** Puts the render worker's code in agent/render/worker-source.ts (WORKER_SOURCE) for the bundle. */
function renderWorkerSource(code: string): Plugin {
  return {
    name: 'render-worker-source',
    setup(b) {
      b.onLoad({ filter: new RegExp(`^${escapeRe(RENDER_WORKER_SOURCE)}$`) }, () => ({ contents: `export const WORKER_SOURCE = ${JSON.stringify(code)};`, loader: 'js' }));
    },
  };
}

/** The name the code gets inside its wrapper for `import.meta.url` (the loader passes the bundle's URL). */
const IMPORT_META_URL = '__secretsAgentImportMetaUrl';

/** The code as it sits after the marker: each line prefixed with `//`, so Node's own parse of the file skips it as comments (agent/loader.ts undoes it). */
export function encodeCode(code: string): string {
  return '//' + code.replaceAll('\n', '\n//');
}

/**
 * Bundle agent/main.ts into `outfile` (default dist/secrets-agent.mjs), one file:
 * agent/loader.ts, minified, then CODE_MARKER, then the agent's code wrapped as
 * `(async function (require, importMetaUrl) {...})` and commented out line by
 * line (encodeCode). The loader compiles that code with vm.Script and a V8 code
 * cache when one matches (agent/loader.ts). An external source map of the code
 * (line 1 = the wrapper's first line) sits next to the file.
 */
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
    // No `import.meta` inside a function compiled by vm.Script: the loader passes the URL.
    define: { 'import.meta.url': IMPORT_META_URL },
    plugins: [builtinsViaRequire, renderWorkerSource(await buildRenderWorker())],
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
    write: false,
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.mjs'));
  const map = result.outputFiles.find((f) => f.path.endsWith('.map'));
  if (!js || !map) throw new Error(`esbuild wrote no bundle building ${ENTRY}: outputs ${result.outputFiles.map((f) => f.path).join(', ')}; check the build settings`);
  // agent/main.ts starts with `#!/usr/bin/env node`: esbuild keeps it as the first line; the loader carries it instead.
  const body = asciiSource(js.text.replace(/^#!.*\n/, ''));
  // import.meta cannot appear inside the wrapper function (vm.Script compiles a script, not a module).
  if (/\bimport\.meta\b/.test(body)) throw new Error(`the bundle still uses import.meta building ${outfile}: only import.meta.url is passed in by the loader; define the rest in scripts/build.ts`);
  if (/[\r\u2028\u2029]/.test(body)) throw new Error(`the bundle contains a CR, U+2028 or U+2029 building ${outfile}: it would end a // comment line; escape it in the source`);
  const code = `(async function(require,${IMPORT_META_URL}){"use strict";\n${body}\n})`;
  const sha256 = createHash('sha256').update(code).digest('hex');
  // The loader is told where the marker starts (a fixed-width number, so the
  // second build, with the real offset, has the length the first one measured).
  const buildLoader = async (offset: string): Promise<string> => {
    const loader = await build({
      entryPoints: [LOADER],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      minify: true,
      define: {
        __SECRETS_AGENT_CODE_SHA256__: JSON.stringify(sha256),
        __SECRETS_AGENT_CODE_MARKER__: JSON.stringify(CODE_MARKER),
        __SECRETS_AGENT_CODE_OFFSET__: JSON.stringify(offset),
        __SECRETS_AGENT_NODE_ENGINES__: JSON.stringify(await nodeEngines()),
      },
      banner: { js: '#!/usr/bin/env node' },
      logLevel: 'warning',
      write: false,
    });
    return loader.outputFiles[0]!.text.trimEnd();
  };
  const width = (n: number): string => String(n).padStart(10, '0');
  const loaderJs = await buildLoader(width((await buildLoader(width(0))).length));
  if (width(loaderJs.length) !== /"(\d{10})"/.exec(loaderJs)?.[1] || /[^ -~\n\t]/.test(loaderJs)) {
    throw new Error(`the loader's code offset is not its own length building ${outfile}: check agent/loader.ts's use of __SECRETS_AGENT_CODE_OFFSET__`);
  }
  const text = `${loaderJs}${CODE_MARKER}${encodeCode(code)}\n`;
  // Each file is written to a temp name then renamed: a test or a shell reading
  // dist/secrets-agent.mjs while another build runs sees the old file or the new one,
  // never a half-written one.
  await mkdir(dirname(outfile), { recursive: true });
  for (const [path, contents, mode] of [[outfile, text, 0o755], [`${outfile}.map`, map.text, 0o644]] as const) {
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, contents, { mode });
    await rename(tmp, path);
  }
  const head = (await readFile(outfile, 'utf8')).slice(0, 200);
  if (!head.startsWith('#!/usr/bin/env node\n')) throw new Error(`${outfile} does not start with #!/usr/bin/env node`);
  const { size } = await stat(outfile);
  await writeAtomic(join(dirname(outfile), NOTICES_NAME), await thirdPartyNotices(result.metafile, outfile));
  await buildWarmup(join(dirname(outfile), 'code-cache-warmup.mjs'));
  return { outfile, bytes: size, sha256, inputs: contributions(result.metafile, outfile) };
}

/** package.json's engines.node: the Node versions the bundle runs on (the loader names them on an older Node). */
async function nodeEngines(): Promise<string> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { engines?: { node?: string } };
  if (!pkg.engines?.node) throw new Error(`${join(ROOT, 'package.json')} has no engines.node: the loader names it on an older Node; set it (docs/install.md)`);
  return pkg.engines.node;
}

async function writeAtomic(path: string, contents: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, contents, { mode: 0o644 });
  await rename(tmp, path);
}

/** The package directory a bundled input belongs to (the last node_modules/<name> or node_modules/@scope/<name> of its path), or undefined for the agent's own code. */
export function packageDirOf(input: string): string | undefined {
  return /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1];
}

/** A file of a package's top directory that carries its license or notices (LICENSE, LICENSE.md, LICENCE, COPYING, NOTICE, …). */
const LEGAL_FILE = /^(?:licen[cs]e|copying|notice)(?:[.-].*)?$/i;

export interface BundledPackage {
  name: string;
  version: string;
  /** package.json's `license` (an SPDX expression), or "UNKNOWN" when it has none. */
  license: string;
  /** The package's LICENSE/NOTICE files: file name and text. */
  files: Array<{ file: string; text: string }>;
}

/** Every package that put at least one byte into `outfile`, from esbuild's metafile (one entry per name@version; sorted). */
export async function bundledPackages(meta: Metafile, outfile: string): Promise<BundledPackage[]> {
  const out = Object.entries(meta.outputs).find(([name]) => resolve(name) === resolve(outfile));
  if (!out) throw new Error(`esbuild's metafile has no output ${outfile} (outputs: ${Object.keys(meta.outputs).join(', ')}): check the build settings`);
  const dirs = new Set<string>();
  for (const [input, { bytesInOutput }] of Object.entries(out[1].inputs)) {
    const dir = packageDirOf(input);
    if (dir && bytesInOutput > 0) dirs.add(resolve(dir));
  }
  const byId = new Map<string, BundledPackage>();
  for (const dir of dirs) {
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string; license?: unknown };
    if (!pkg.name || !pkg.version) throw new Error(`${join(dir, 'package.json')} has no name or version: cannot list the bundled package in ${NOTICES_NAME}`);
    const id = `${pkg.name}@${pkg.version}`;
    if (byId.has(id)) continue;
    const names = (await readdir(dir)).filter((f) => LEGAL_FILE.test(f)).sort();
    const files = await Promise.all(names.map(async (file) => ({ file, text: (await readFile(join(dir, file), 'utf8')).trim() })));
    if (typeof pkg.license !== 'string' && files.length === 0) throw new Error(`${id} (${dir}) is bundled but declares no license and ships no license file: its code cannot be shipped without knowing its terms; check the package or drop it`);
    byId.set(id, { name: pkg.name, version: pkg.version, license: typeof pkg.license === 'string' ? pkg.license : 'UNKNOWN', files });
  }
  return [...byId.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
}

/**
 * dist/THIRD-PARTY-NOTICES: a list of the bundled packages (name, version,
 * license), then each distinct license or notice text once, followed by the
 * packages it belongs to (the ~30 AWS SDK packages share one Apache-2.0 text).
 * A package that ships no license file is listed with its declared license and
 * says so (for Apache-2.0, the text is the one in this project's LICENSE).
 */
export async function thirdPartyNotices(meta: Metafile, outfile: string): Promise<string> {
  const pkgs = await bundledPackages(meta, outfile);
  const texts = new Map<string, string[]>();
  for (const p of pkgs) for (const f of p.files) texts.set(f.text, [...(texts.get(f.text) ?? []), `${p.name}@${p.version} (${f.file})`]);
  const rule = '-'.repeat(78);
  return [
    'secrets-agent: third-party software',
    '',
    `secrets-agent.mjs is one file that includes code of the ${pkgs.length} packages below (made by`,
    'scripts/build.ts from the bundle\'s own inputs). Each is distributed under its own',
    'license, reproduced after the list. secrets-agent itself: Apache-2.0 (LICENSE).',
    '',
    ...pkgs.map((p) => `- ${p.name}@${p.version}: ${p.license}${p.files.length ? '' : ' (the package ships no license file; for Apache-2.0 the text is the one in LICENSE)'}`),
    '',
    ...[...texts].flatMap(([text, owners]) => [rule, `${owners.join('\n')}:`, '', text, '']),
  ].join('\n');
}

/** scripts/code-cache-warmup.ts as one file next to the bundle (the image build's compile-cache stage runs it; not shipped in the image). */
async function buildWarmup(outfile: string): Promise<void> {
  await build({ entryPoints: [WARMUP], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node24', logLevel: 'warning' });
}

/**
 * The bundle with every character above U+007F written as a \uXXXX escape: the
 * file is ASCII. esbuild escapes such characters in strings but leaves regex
 * literals as they are (liquidjs's diacritics table: ẞ, Œ, œ, but also à-ÿ;
 * the agent's `µs`). Two copies of the code live as long as the process, each
 * kept for lazy compilation: the vm.Script's (agent/loader.ts) and the ES
 * module's, which is the whole file as Node decoded it. V8 holds a string as
 * one byte a character when every character is below U+0100, but Node's ESM
 * loader decodes a file that is not pure ASCII into a two-byte string: one
 * Latin-1 character made the module's copy 2.4 MB instead of 1.2 MB of private
 * memory (`/proc/<pid>/smaps`: a 2,380 kB region gone, docs/performance.md,
 * Memory). Only regex literals and strings hold them in this output (the
 * minified code has no such identifiers or comments), and \uXXXX means the
 * same character in both. The .map's columns on those lines shift by a few
 * characters.
 */
export function asciiSource(js: string): string {
  return js.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
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

const kib = (n: number): string => `${(n / 1024).toFixed(0)} KiB`;

if (import.meta.main) {
  const result = await buildBundle();
  console.log(`built ${relative(process.cwd(), result.outfile)}: ${kib(result.bytes)} (${result.bytes} bytes), ESM, node24, minified`);
  console.log(`  largest inputs: ${result.inputs.slice(0, 6).map((i) => `${i.name} ${kib(i.bytes)}`).join(', ')}`);
}
