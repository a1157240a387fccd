// What a test runs as another UID (setpriv, spawn with uid) must not depend on
// where the clone lies: a clone under root's home (mode 0700) cannot be
// traversed by UID 65532, so neither node_modules/node/bin/node nor the
// sources in it can be executed or read by that UID. These helpers copy what
// such a test runs into a temp dir every UID can reach (0755 all the way down).
import { chmod, copyFile, mkdir, mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { build } from 'esbuild';
import { buildBundle } from '../../scripts/build.ts';

export interface Reachable {
  /** The temp dir (0755), removed by close(). */
  readonly dir: string;
  /** A copy of the node running this test (the same binary: the same version and V8 flags hash). */
  readonly node: string;
  /** esbuild `entry` (TypeScript, with its imports) into one ES module file in dir. */
  bundle(entry: string): Promise<string>;
  /** The agent as the image runs it (scripts/build.ts's bundle), in dir: what `init` or `run` as another UID executes. */
  agent(): Promise<string>;
  close(): Promise<void>;
}

export async function reachable(prefix = 'sa-reachable-'): Promise<Reachable> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  await mkdir(join(dir, 'bin'), { mode: 0o755 });
  const node = join(dir, 'bin', 'node');
  await copyFile(await realpath(process.execPath), node);
  await chmod(node, 0o755);
  return {
    dir,
    node,
    async bundle(entry: string): Promise<string> {
      const out = join(dir, basename(entry).replace(/\.ts$/, '.mjs'));
      await build({
        entryPoints: [entry],
        outfile: out,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node24',
        logLevel: 'silent',
        // CommonJS dependencies (pino) call require(): give the ES module one.
        banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      });
      await chmod(out, 0o644);
      return out;
    },
    async agent(): Promise<string> {
      const out = join(dir, 'secrets-agent.mjs');
      await buildBundle(out);
      await chmod(out, 0o644);
      return out;
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
