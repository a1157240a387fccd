// `npm run bench:image`: the image's sidecar memory as the kernel charges it,
// and the requests/limits that follow from it (agent/deploy.ts AGENT_RESOURCES).
//
// The project's Dockerfile is built for real (test/image/image.ts: buildah, the
// base images replaced by local stand-ins), and `run` starts from the image with
// native-sidecar.yaml's command line, as 65532 on a read-only root, each
// container in its own cgroup v1 memory cgroup (a pod's container cgroup), its
// files on a tmpfs mounted inside its mount namespace (emptyDir medium: Memory,
// charged to the container like the kubelet's). For 10 and 1,000 secrets:
//   cold: the image's files (node, its libraries, the bundle, the code cache)
//         dropped from the page cache first (dd iflag=nocache), so this
//         container is charged for reading them, as the first pod of the image
//         on a node is;
//   warm: a second container of the same image started while the first runs:
//         the page cache it maps is already charged to the first;
//   init: init-container.yaml's command line, one render, its peak (warm).
// After /readyz answers, the container runs WINDOW_S seconds of check rounds
// (moto on loopback); then, from the cgroup: usage (memory.usage_in_bytes),
// working set as the kubelet computes it (usage - total_inactive_file; this is
// what eviction and `kubectl top` use), and peak (memory.max_usage_in_bytes,
// start-up included). Numbers from one run on a shared machine: read them as
// such. Needs root, buildah and debootstrap (as test:image).
//
//   npm run bench:image                  build, measure, print (~5 min)
//   npm run bench:image -- --out=FILE    also write the rows as JSON
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AGENT_RESOURCES } from '../../agent/deploy.ts';
import { exampleAgentContainers } from '../support/dockerfile.ts';
import { freePort, startMoto, TEST_ROLE_ARN, type Moto } from '../support/moto.ts';
import { stopAll } from '../support/procs.ts';
import { waitUntil } from '../support/wait.ts';
import { buildImage, imageConfig, launch, missingTools, mountImage, removeImages, standIns, entrypointOf, type ImageConfig, type Mounted } from '../image/image.ts';
import { createSecrets, type Created } from './fixtures.ts';

const MiB = 2 ** 20;
const CGROUP_ROOT = '/sys/fs/cgroup/memory';
/** Seconds of check rounds measured after /readyz. */
const WINDOW_S = Number(process.env.BENCH_IMAGE_WINDOW_S ?? 40);
/**
 * The margin (docs/performance.md, Resources): the request is the sidecar's
 * largest working set x 1.25, rounded up to 8 Mi (the scheduler places pods by
 * their requests; under memory pressure the kubelet evicts first the pods whose
 * working set is above their request); the limit is the largest peak, page
 * cache and the init container included, x 1.5, rounded up to 32 Mi (the
 * kernel reclaims page cache at the limit, then OOM-kills).
 */
export const MARGIN = { request: 1.25, requestStepMi: 8, limit: 1.5, limitStepMi: 32 } as const;

export interface ImageMemoryRow {
  secrets: number;
  /** The sidecar (`run`) started cold or warm; or the init container's one render (`init`, warm), measured at its exit. */
  start: 'cold' | 'warm' | 'init';
  usageMiB: number;
  workingSetMiB: number;
  peakMiB: number;
  inactiveFileMiB: number;
  /** total_rss of the cgroup: anonymous memory. */
  rssMiB: number;
  /** total_cache: page cache (file pages and tmpfs) charged to it. */
  cacheMiB: number;
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

async function cgroupStat(cg: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await readFile(join(cg, 'memory.stat'), 'utf8')).split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v) out[k] = Number(v);
  }
  return out;
}

async function readCgroup(cg: string): Promise<Omit<ImageMemoryRow, 'secrets' | 'start'>> {
  const usage = Number(await readFile(join(cg, 'memory.usage_in_bytes'), 'utf8'));
  const peak = Number(await readFile(join(cg, 'memory.max_usage_in_bytes'), 'utf8'));
  const st = await cgroupStat(cg);
  const inactive = st.total_inactive_file ?? 0;
  return {
    usageMiB: round1(usage / MiB),
    workingSetMiB: round1(Math.max(0, usage - inactive) / MiB),
    peakMiB: round1(peak / MiB),
    inactiveFileMiB: round1(inactive / MiB),
    rssMiB: round1((st.total_rss ?? 0) / MiB),
    cacheMiB: round1((st.total_cache ?? 0) / MiB),
  };
}

/** Drops the image's files from the page cache (what a node that never ran the image has). */
function evict(root: string): void {
  const r = spawnSync('find', [root, '-xdev', '-type', 'f', '-size', '+0', '-exec', 'dd', 'iflag=nocache', 'count=0', 'status=none', 'if={}', ';'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`evicting ${root}: ${r.stderr}`);
}

function configYaml(secrets: readonly Created[], listen: string): string {
  const many = secrets.length > 100;
  return [
    'source:',
    '  region: us-east-1',
    'outputDir: /run/secrets/app',
    'refresh:',
    // 10 secrets: a check round every 2 s; 1,000: batched (ListSecrets), every 15 s.
    many ? '  interval: 15s\n  batchChecks: true' : '  interval: 2s',
    'secrets:',
    ...secrets.map((s, i) => `  s${i}: { id: ${JSON.stringify(s.id)} }`),
    'files:',
    ...secrets.map((_, i) => `  - { path: s${i}.txt, secret: s${i}, mode: "0440" }`),
    'server:',
    `  listen: "${listen}"`,
    '',
  ].join('\n');
}

interface Ctx {
  dir: string;
  moto: Moto;
  config: ImageConfig;
  /** native-sidecar.yaml's command line. */
  argv: string[];
  /** init-container.yaml's. */
  initArgv: string[];
}

async function startContainer(ctx: Ctx, m: Mounted, secrets: readonly Created[], name: string, init = false) {
  const port = await freePort();
  const cfg = join(ctx.dir, name);
  await mkdir(cfg, { recursive: true });
  await writeFile(join(cfg, 'config.yaml'), configYaml(secrets, `127.0.0.1:${port}`));
  const cg = join(CGROUP_ROOT, `secrets-agent-bench-${process.pid}-${name}`);
  await mkdir(cg);
  const { uid, gid } = entrypointOf(ctx.config);
  const child = await launch(
    {
      root: m.root,
      argv: init ? ctx.initArgv : ctx.argv,
      uid,
      gid,
      groups: [2000],
      cwd: ctx.config.WorkingDir || '/',
      env: {
        ...Object.fromEntries((ctx.config.Env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL: ctx.moto.url,
        AWS_ROLE_ARN: TEST_ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token',
        AWS_EC2_METADATA_DISABLED: 'true',
      },
      tmpfs: [{ target: '/run/secrets/app', options: 'mode=2770,gid=2000,size=64m' }],
      binds: [
        { source: cfg, target: '/etc/secrets-agent/config' },
        { source: join(ctx.dir, 'token'), target: '/var/run/secrets/eks.amazonaws.com/serviceaccount' },
      ],
      cgroup: cg,
    },
    join(ctx.dir, `${name}.json`),
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  child.stdout!.resume();
  const exited = once(child, 'exit');
  if (init) {
    const [code] = (await exited) as [number | null];
    if (code !== 0) throw new Error(`${name} exited ${code}: ${stderr}`);
    return { child, cg, stop: () => rmdir(cg).catch(() => undefined) };
  }
  await waitUntil(`${name}: /readyz`, async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${stderr}`);
    return (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200;
  }, 180_000, 200);
  return {
    child,
    cg,
    async stop(): Promise<void> {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rmdir(cg).catch(() => undefined);
    },
  };
}

export async function imageMemory(log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<ImageMemoryRow[]> {
  const missing = missingTools();
  if (missing.length) throw new Error(`bench:image needs ${missing.join(', ')}`);
  const tag = `localhost/secrets-agent-bench:${process.pid}`;
  const dir = await mkdtemp(join(tmpdir(), 'sa-bench-image-'));
  await mkdir(join(dir, 'token'));
  await writeFile(join(dir, 'token', 'token'), 'projected-token');
  spawnSync('chmod', ['-R', 'a+rX', dir]);
  const moto = await startMoto();
  const running: { child: import('node:child_process').ChildProcess; stop(): Promise<void> }[] = [];
  const mounts: Mounted[] = [];
  let tags: string[] = [tag];
  try {
    log('creating 1,010 secrets in moto ...');
    const sets = [
      await createSecrets(moto, Array.from({ length: 10 }, (_, i) => `bench/image/s${String(i).padStart(2, '0')}`)),
      await createSecrets(moto, Array.from({ length: 1000 }, (_, i) => `bench/image-many/s${String(i).padStart(4, '0')}`)),
    ];
    log('building the image (stand-in bases) ...');
    const bases = standIns();
    tags = [tag, bases.build, bases.runtime];
    const built = await buildImage(tag, bases);
    log(`built in ${built.seconds.toFixed(0)} s`);
    const config = imageConfig(tag);
    const c = (await exampleAgentContainers()).find((x) => x.file === 'native-sidecar.yaml' && x.name === 'secrets-agent')!;
    const argv = [...(c.command ?? config.Entrypoint!), 'run', '--config', '/etc/secrets-agent/config/config.yaml'];
    const i = (await exampleAgentContainers()).find((x) => x.file === 'init-container.yaml' && x.name === 'secrets-agent')!;
    const initArgv = [...(i.command ?? config.Entrypoint!), 'init', '--config', '/etc/secrets-agent/config/config.yaml'];
    const ctx: Ctx = { dir, moto, config, argv, initArgv };
    const rows: ImageMemoryRow[] = [];
    for (const secrets of sets) {
      const a = mountImage(tag);
      const b = mountImage(tag);
      mounts.push(a, b);
      evict(a.root);
      for (const [start, m] of [['cold', a], ['warm', b]] as const) {
        log(`${secrets.length} secrets, ${start} ...`);
        const r = await startContainer(ctx, m, secrets, `${start}-${secrets.length}`);
        running.push(r);
        await sleep(WINDOW_S * 1000);
        rows.push({ secrets: secrets.length, start, ...(await readCgroup(r.cg)) });
      }
      await stopAll(running.map((r) => r.child));
      for (const r of running.splice(0)) await r.stop();
      // The init container's render, the image's files cached: its peak (it has exited; usage is then only page cache).
      log(`${secrets.length} secrets, init ...`);
      const r = await startContainer(ctx, b, secrets, `init-${secrets.length}`, true);
      rows.push({ secrets: secrets.length, start: 'init', ...(await readCgroup(r.cg)) });
      await r.stop();
      for (const m of mounts.splice(0)) m.remove();
    }
    return rows;
  } finally {
    await stopAll(running.map((r) => r.child));
    for (const r of running) await r.stop();
    for (const m of mounts) m.remove();
    removeImages(...tags);
    await moto.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const up = (x: number, step: number): number => Math.ceil(x / step) * step;

/** requests/limits from the rows, with MARGIN. */
export function derive(rows: readonly ImageMemoryRow[]): { request: string; limit: string } {
  const ws = Math.max(...rows.filter((r) => r.start !== 'init').map((r) => r.workingSetMiB));
  const peak = Math.max(...rows.map((r) => r.peakMiB));
  return { request: `${up(ws * MARGIN.request, MARGIN.requestStepMi)}Mi`, limit: `${up(peak * MARGIN.limit, MARGIN.limitStepMi)}Mi` };
}

if (import.meta.main) {
  const out = process.argv.find((a) => a.startsWith('--out='))?.slice('--out='.length);
  const rows = await imageMemory();
  const lines = [
    `## Image sidecar memory (cgroup v1, ${WINDOW_S} s of check rounds after /readyz; MiB)`,
    '',
    '| secrets | start | usage | working set (usage - inactive_file) | peak | inactive_file | rss | cache |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) =>
      r.start === 'init'
        ? `| ${r.secrets} | init (exited; warm) | - | - | ${r.peakMiB} | - | - | - |`
        : `| ${r.secrets} | ${r.start} | ${r.usageMiB} | ${r.workingSetMiB} | ${r.peakMiB} | ${r.inactiveFileMiB} | ${r.rssMiB} | ${r.cacheMiB} |`,
    ),
    '',
  ];
  const d = derive(rows);
  lines.push(
    `Derived (request = the sidecar's max working set x ${MARGIN.request}, up to ${MARGIN.requestStepMi}Mi; limit = max peak, init included, x ${MARGIN.limit}, up to ${MARGIN.limitStepMi}Mi):`,
    `  requests.memory ${d.request}, limits.memory ${d.limit}`,
    `agent/deploy.ts AGENT_RESOURCES: requests.memory ${AGENT_RESOURCES.requests.memory}, limits.memory ${AGENT_RESOURCES.limits.memory}` +
      (d.request === AGENT_RESOURCES.requests.memory && d.limit === AGENT_RESOURCES.limits.memory ? ' (the same)' : ' (differs: update it from these figures, or say why not)'),
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  if (out) await writeFile(out, JSON.stringify({ date: new Date().toISOString(), windowS: WINDOW_S, margin: MARGIN, rows, derived: d }, null, 2));
}
