// Bundles the bench builds itself, to measure build settings before anyone
// adopts them (dist/secrets-agent.mjs is built by scripts/build.ts, not here):
//
// - candidate: scripts/build.ts's settings (minified, ESM builds of the SDK,
//   built-ins through require()), built here so a setting can be tried first.
// - minimal: test/bench/minimal-init.mjs bundled with plain settings (the floor of init, bundled).
//
// NODE_COMPILE_CACHE: Node 22+ can keep V8's compiled code on disk; a cache made
// once (e.g. at image build time with `secrets-agent version`) skips most of the
// compilation of the bundle at every start. dist/secrets-agent.mjs also has its own
// code cache (agent/loader.ts, SECRETS_AGENT_CODE_CACHE), made by the warm-up
// next to it (dist/code-cache-warmup.mjs) as the image's code-cache stage makes it.
import { build } from 'esbuild';
import { builtinsViaRequire } from '../../scripts/build.ts';
import { mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REPO, runToEnd } from './lib.ts';

const BANNER = "import { createRequire as __benchRequire } from 'node:module'; const require = __benchRequire(import.meta.url);";

async function bundle(entry: string, outfile: string, candidate: boolean): Promise<string> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    logLevel: 'error',
    banner: { js: BANNER },
    ...(candidate ? { minify: true, mainFields: ['module', 'main'], plugins: [builtinsViaRequire] } : {}),
  });
  return outfile;
}

/** The agent with the candidate build settings. */
export async function buildCandidate(root: string): Promise<string> {
  const dir = join(root, 'candidate');
  await mkdir(dir, { recursive: true });
  return bundle(join(REPO, 'agent/main.ts'), join(dir, 'secrets-agent.mjs'), true);
}

export async function buildMinimal(root: string): Promise<string> {
  return bundle(join(REPO, 'test/bench/minimal-init.mjs'), join(root, 'minimal-init.bundle.mjs'), false);
}

/**
 * A compile cache for `entry`, made as the image's compile-cache stage makes it:
 * by running `version` once, with each flag set (Node keeps one cache per set of
 * V8 flags, side by side in the same directory).
 */
export async function warmCompileCache(entry: string, dir: string, flagSets: readonly (readonly string[])[] = [[]]): Promise<string> {
  await mkdir(dir, { recursive: true });
  const warmup = join(dirname(entry), 'code-cache-warmup.mjs');
  for (const flags of flagSets) {
    await runToEnd(process.execPath, [...flags, entry, 'version'], { env: { ...process.env, NODE_COMPILE_CACHE: dir } });
    // The agent's own code cache (agent/loader.ts), as the image's code-cache stage makes it; the same dir (file names differ).
    if (existsSync(warmup)) await runToEnd(process.execPath, [...flags, warmup, entry], { env: { ...process.env, SECRETS_AGENT_CODE_CACHE: dir } });
  }
  return dir;
}
