// Bench fixtures: moto, secrets, configs, the agent under test, the bundle.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentEnv, type Moto } from '../support/moto.ts';
import type { Proxy, Recorded } from '../support/proxy.ts';
import { REPO, runToEnd, start, type Proc } from './lib.ts';

export interface BenchContext {
  readonly quick: boolean;
  readonly moto: Moto;
  /** Temp dir for this run: configs, output dirs, the token. */
  readonly root: string;
  /** The projected service-account token (any text: moto does not verify it). */
  readonly tokenFile: string;
  /** dist/secrets-agent.mjs, when there is one. */
  readonly bundle: string | undefined;
  /** The bench's own bundle with candidate build settings (bundles.ts). */
  readonly candidate: string;
  /** 1,000 secrets (10 when quick), created once in the background for the memory and scale cases. */
  readonly many: () => Promise<Created[]>;
  /** A compile cache (NODE_COMPILE_CACHE dir) warmed for each bundle, by path, with no flags and with imageFlags. */
  readonly compileCache: ReadonlyMap<string, string>;
  /** The node flags of the Dockerfile's ENTRYPOINT: how the image runs the bundle (the sidecar, `run`). */
  readonly imageFlags: readonly string[];
  /** The node flags of the example init container's `command` (k8s-examples/init-container.yaml). */
  readonly initFlags: readonly string[];
  /** Things the reader of the results must know (skipped rows, stand-ins). */
  readonly notes: string[];
}

export const SOURCE_ENTRY = join(REPO, 'agent/main.ts');

export interface AgentVariants {
  /** dist when it exists, else the candidate: what "the bundle" means in every table. */
  bundle: Variant;
  /** The bundle with a warm compile cache. */
  cached: Variant;
  /** The bundle as the image runs it: the ENTRYPOINT's flags and the compile cache its compile-cache stage makes. */
  recommended: Variant;
  /** The bundle as the example init container runs it: its command's flags and the compile cache. */
  asInitContainer: Variant;
  /** The bench's candidate build (bundles.ts), plain and as the image would run it; when dist exists (else it is `bundle`). */
  candidate: Variant | undefined;
  candidateRecommended: Variant | undefined;
  source: Variant;
}

export function agentVariants(ctx: BenchContext): AgentVariants {
  const bundle: Variant = ctx.bundle
    ? { label: 'bundle (dist)', entry: ctx.bundle, flags: [] }
    : { label: 'candidate bundle', entry: ctx.candidate, flags: [] };
  // The caches the image ships: the agent's code cache (agent/loader.ts) for dist, Node's compile cache for the candidate (plain ESM).
  const cacheDir = ctx.compileCache.get(bundle.entry) ?? '';
  const caches = ctx.bundle ? 'code cache' : 'compile cache';
  const cached: Variant = { ...bundle, label: `${bundle.label} + ${caches}`, env: { NODE_COMPILE_CACHE: cacheDir, SECRETS_AGENT_CODE_CACHE: cacheDir } };
  return {
    bundle,
    cached,
    recommended: { ...cached, label: `${bundle.label} as the image runs it (${caches}, ${ctx.imageFlags.join(' ')})`, flags: ctx.imageFlags },
    asInitContainer: { ...cached, label: `${bundle.label} as the init container runs it (${caches}, ${ctx.initFlags.join(' ') || 'no flags'})`, flags: ctx.initFlags },
    candidate: ctx.bundle ? { label: 'candidate bundle', entry: ctx.candidate, flags: [] } : undefined,
    candidateRecommended: ctx.bundle
      ? {
          label: `candidate bundle as the image would run it (compile cache, ${ctx.imageFlags.join(' ')})`,
          entry: ctx.candidate,
          flags: ctx.imageFlags,
          env: { NODE_COMPILE_CACHE: ctx.compileCache.get(ctx.candidate) ?? '' },
        }
      : undefined,
    source: { label: 'source (agent/main.ts)', entry: SOURCE_ENTRY, flags: [] },
  };
}

/** A variant with other node flags. */
export function withFlags(v: Variant, flags: readonly string[]): Variant {
  return { ...v, label: `${v.label} ${flags.join(' ')}`, flags };
}

/** Extra flag sets to try on the bundle (BENCH_FLAGS="--a --b;--c": two more variants). */
export function extraFlagSets(): string[][] {
  return (process.env.BENCH_FLAGS ?? '')
    .split(';')
    .map((set) => set.trim().split(/\s+/).filter(Boolean))
    .filter((set) => set.length > 0);
}

/** Environment of an AWS client process: web identity (STS) against `url` (moto or a proxy in front of it). */
export function awsEnv(ctx: BenchContext, url: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return agentEnv({ url } as Moto, ctx.tokenFile, extra);
}

// --- secrets ------------------------------------------------------------------

export interface Created {
  readonly id: string;
  readonly arn: string;
  versionId: string;
  value: string;
}

/** A realistic small JSON secret (~110 bytes). */
export function secretValue(i: number, generation = 0): string {
  const pw = `${(i * 2654435761 + generation * 40503) >>> 0}`.padStart(10, '0');
  return JSON.stringify({ username: `app_${i}`, password: `pw-${pw}-${generation}-Zq8x`, host: `db-${i % 7}.internal`, port: 5432, dbname: 'app' });
}

/** moto's server answers some concurrent writes with a 500 (its threaded server races): retry those. */
async function withRetry<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= 5 || !/ 5\d\d /.test((err as Error).message)) throw err;
      await sleep(100 * attempt);
    }
  }
}

async function createOne(moto: Moto, id: string, value: string): Promise<{ ARN: string; VersionId: string }> {
  try {
    return await withRetry(() => moto.sm<{ ARN: string; VersionId: string }>('CreateSecret', { Name: id, SecretString: value }));
  } catch (err) {
    // A create that landed before its 500: retried, it exists.
    if (!/ResourceExistsException/.test((err as Error).message)) throw err;
    return withRetry(() => moto.sm<{ ARN: string; VersionId: string }>('PutSecretValue', { SecretId: id, SecretString: value }));
  }
}

/** Create secrets in moto, a few requests at a time (moto serves ~100-200 requests/s). */
export async function createSecrets(moto: Moto, ids: readonly string[], value: (i: number) => string = secretValue): Promise<Created[]> {
  const out: Created[] = new Array<Created>(ids.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(4, ids.length) }, async () => {
      while (next < ids.length) {
        const i = next++;
        const id = ids[i] as string;
        const v = value(i);
        const r = await createOne(moto, id, v);
        out[i] = { id, arn: r.ARN, versionId: r.VersionId, value: v };
      }
    }),
  );
  return out;
}

/** PutSecretValue (a rotation as the app sees it: AWSCURRENT moves to a new version); a retry is idempotent. */
export async function rotate(moto: Moto, s: Created, value: string): Promise<void> {
  const body = { SecretId: s.id, SecretString: value, ClientRequestToken: randomUUID() };
  const r = await withRetry(() => moto.sm<{ VersionId: string }>('PutSecretValue', body));
  s.versionId = r.VersionId;
  s.value = value;
}

// --- the DescribeSecret stand-in ------------------------------------------------------

/**
 * Answers DescribeSecret, and ListSecrets with one `name` filter (the batched
 * check of refresh.batchChecks), at the proxy instead of moto, with moto's own
 * answer shapes (captured once) carrying each secret's current version.
 *
 * Why: moto serves ~130 DescribeSecret/s on a 2-core machine, so against moto
 * alone a check cycle of 1,000 secrets, or 1,000 cycles of 10, would measure
 * moto. STS, BatchGetSecretValue and GetSecretValue still go to moto, and the
 * agent's side (SDK, signing, HTTP, parsing, scheduling) is fully real.
 */
export class DescribeStandIn {
  readonly #template: Record<string, unknown>;
  readonly #listTemplate: Record<string, unknown>;
  readonly #bodies = new Map<string, string>();
  /** ListSecrets entries by name, sorted by name (a `name` filter is a prefix match). */
  readonly #entries = new Map<string, Record<string, unknown>>();
  #names: string[] | undefined;

  private constructor(template: Record<string, unknown>, listTemplate: Record<string, unknown>) {
    this.#template = template;
    this.#listTemplate = listTemplate;
  }

  static async capture(moto: Moto, sample: Created): Promise<DescribeStandIn> {
    const answer = await moto.sm<Record<string, unknown>>('DescribeSecret', { SecretId: sample.id });
    const list = await moto.sm<{ SecretList?: Record<string, unknown>[] }>('ListSecrets', { Filters: [{ Key: 'name', Values: [sample.id] }] });
    const entry = list.SecretList?.find((e) => e.Name === sample.id);
    if (!entry) throw new Error(`moto's ListSecrets did not list ${sample.id}`);
    return new DescribeStandIn(answer, entry);
  }

  /** (Re)state a secret's current version; answers for it change from now on. */
  set(s: Created): void {
    const body = { ...this.#template, ARN: s.arn, Name: s.id, VersionIdsToStages: { [s.versionId]: ['AWSCURRENT'] } };
    const text = JSON.stringify(body);
    this.#bodies.set(s.id, text);
    this.#bodies.set(s.arn, text);
    if (!this.#entries.has(s.id)) this.#names = undefined;
    this.#entries.set(s.id, { ...this.#listTemplate, ARN: s.arn, Name: s.id, SecretVersionsToStages: { [s.versionId]: ['AWSCURRENT'] } });
  }

  /**
   * ListSecrets with a `name` filter: every secret whose name starts with one
   * of the values (as Secrets Manager filters), MaxResults a page (default
   * 100), NextToken the offset of the next page.
   */
  #list(body: string): string | undefined {
    const req = JSON.parse(body) as { Filters?: { Key?: string; Values?: string[] }[]; NextToken?: string; MaxResults?: number };
    const filters = req.Filters ?? [];
    if (filters.length !== 1 || filters[0]?.Key !== 'name') return undefined; // moto answers the rest
    const names = (this.#names ??= [...this.#entries.keys()].sort());
    const out: Record<string, unknown>[] = [];
    const seen = new Set<string>();
    for (const value of filters[0].Values ?? []) {
      // names is sorted: the ones with this prefix are contiguous from the first >= value.
      let lo = 0;
      let hi = names.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((names[mid] as string) < value) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < names.length && (names[i] as string).startsWith(value); i++) {
        const name = names[i] as string;
        const e = this.#entries.get(name);
        if (e && !seen.has(name)) {
          seen.add(name);
          out.push(e);
        }
      }
    }
    const from = Number(req.NextToken ?? 0);
    const page = req.MaxResults ?? 100;
    const next = from + page < out.length ? { NextToken: String(from + page) } : {};
    return JSON.stringify({ SecretList: out.slice(from, from + page), ...next });
  }

  attach(proxy: Proxy): void {
    proxy.fault = (operation: string, req: Recorded) => {
      let body: string | undefined;
      if (operation === 'DescribeSecret') body = this.#bodies.get((JSON.parse(req.body) as { SecretId?: string }).SecretId ?? '');
      else if (operation === 'ListSecrets') body = this.#list(req.body);
      return body === undefined ? undefined : { kind: 'status', status: 200, body, headers: { 'content-type': 'application/x-amz-json-1.1' } };
    };
  }
}

/**
 * Counts requests at a proxy by operation, consuming its record as it goes
 * (the proxy keeps every request; a memory run makes tens of thousands).
 */
export class Tally {
  readonly #proxy: Proxy;
  readonly counts = new Map<string, number>();
  /** Arrival time of the most recent request of each operation. */
  readonly last = new Map<string, number>();
  /** Arrival time of the first request of each operation since the last reset(). */
  readonly first = new Map<string, number>();
  /** When set, every request (operation, arrival time) is appended here as it is counted. */
  log: { operation: string; at: number }[] | undefined;

  constructor(proxy: Proxy) {
    this.#proxy = proxy;
  }

  update(): this {
    for (const r of this.#proxy.requests.splice(0)) {
      this.counts.set(r.operation, (this.counts.get(r.operation) ?? 0) + 1);
      this.last.set(r.operation, r.at);
      if (!this.first.has(r.operation)) this.first.set(r.operation, r.at);
      this.log?.push({ operation: r.operation, at: r.at });
    }
    return this;
  }

  get(operation: string): number {
    return this.update().counts.get(operation) ?? 0;
  }

  /** Counts since the previous snapshot. */
  snapshot(): Record<string, number> {
    this.update();
    const out = Object.fromEntries(this.counts);
    this.reset();
    return out;
  }

  reset(): void {
    this.update();
    this.counts.clear();
    this.last.clear();
    this.first.clear();
  }
}

// --- configs ------------------------------------------------------------------

export interface ConfigOptions {
  outputDir: string;
  secrets: readonly { name: string; id: string }[];
  /** YAML list items under `files:` (each starting with "  - "). */
  files: readonly string[];
  interval?: string;
  jitter?: number;
  rotationAware?: boolean;
  /** YAML list items under `notify:`. */
  notify?: readonly string[];
  /** Serve /metrics on a free loopback port. @default true */
  server?: boolean;
  /** refresh.batchChecks (ListSecrets: 10 names a call, or a path 100 entries a call). */
  batchChecks?: boolean;
}

const q = (s: string): string => JSON.stringify(s);

export function configYaml(o: ConfigOptions): string {
  const refresh: string[] = [];
  if (o.interval !== undefined) refresh.push(`interval: ${o.interval}`);
  if (o.jitter !== undefined) refresh.push(`jitter: ${o.jitter}`);
  if (o.rotationAware !== undefined) refresh.push(`rotationAware: ${o.rotationAware}`);
  if (o.batchChecks !== undefined) refresh.push(`batchChecks: ${o.batchChecks}`);
  return [
    'source: { region: us-east-1 }',
    `outputDir: ${q(o.outputDir)}`,
    ...(refresh.length > 0 ? [`refresh: { ${refresh.join(', ')} }`] : []),
    'secrets:',
    ...o.secrets.map((s) => `  ${s.name}: { id: ${q(s.id)} }`),
    'files:',
    ...o.files,
    ...(o.notify && o.notify.length > 0 ? ['notify:', ...o.notify] : []),
    `server: { listen: ${o.server === false ? '""' : '"127.0.0.1:0"'} }`,
    '',
  ].join('\n');
}

export async function writeConfig(dir: string, o: ConfigOptions): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, 'config.yaml');
  await writeFile(path, configYaml(o));
  return path;
}

// --- the agent ------------------------------------------------------------------

export interface Variant {
  /** Row label. */
  readonly label: string;
  /** The script node runs: a bundle or agent/main.ts. */
  readonly entry: string;
  /** Node/V8 flags before the entry. */
  readonly flags: readonly string[];
  /** Extra environment (e.g. NODE_COMPILE_CACHE). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The command line a reader would type for a variant (paths shortened). */
export function commandOf(v: Variant, args: string): string {
  const entry = v.entry.startsWith(REPO) ? v.entry.slice(REPO.length) : v.entry.split('/').pop();
  const env = Object.entries(v.env ?? {}).map(([k, val]) => `${k}=${val.split('/').pop()} `).join('');
  const flags = v.flags.map((f) => (f.startsWith('data:') ? '<data: URL preload>' : f));
  return `${env}node ${[...flags, entry].join(' ')} ${args}`;
}

/** `run` under the given variant, ready when it logged its first render. */
/**
 * Profiling flags for every `run` the bench starts (where its CPU and
 * allocations go; summarized by test/bench/profile-summary.ts):
 * BENCH_PROFILE=cpu:<dir> writes a .cpuprofile per agent into <dir> (node
 * --cpu-prof), BENCH_PROFILE=alloc:<dir> a .heapprofile of every allocation,
 * collected ones included (test/support/alloc-probe.mjs). Profiled numbers
 * are not the bench's numbers: a profiler costs CPU.
 */
export function profileFlags(): { flags: string[]; env: Record<string, string> } {
  const m = /^(cpu|alloc):(.+)$/.exec(process.env.BENCH_PROFILE ?? '');
  if (!m) return { flags: [], env: {} };
  const dir = m[2] as string;
  if (m[1] === 'cpu') return { flags: ['--cpu-prof', '--cpu-prof-interval=200', `--cpu-prof-dir=${dir}`], env: {} };
  return { flags: ['--import', join(REPO, 'test/support/alloc-probe.mjs')], env: { ALLOC_PROBE_DIR: dir } };
}

export async function startRun(ctx: BenchContext, v: Variant, configPath: string, url: string, timeoutMs = 120_000): Promise<{ proc: Proc; readyAt: number; metricsUrl: string | undefined }> {
  const profile = profileFlags();
  const proc = start(process.execPath, [...v.flags, ...profile.flags, v.entry, 'run', '--config', configPath], { env: awsEnv(ctx, url, { ...v.env, ...profile.env }) });
  let metricsUrl: string | undefined;
  const served = proc.waitFor(/serving \/metrics/, timeoutMs).then(() => {
    const line = proc.tail().split('\n').find((l) => l.includes('serving /metrics')) ?? '';
    try {
      metricsUrl = `http://${(JSON.parse(line) as { address: string }).address}/metrics`;
    } catch {
      // no server configured
    }
  });
  served.catch(() => undefined);
  const readyAt = await proc.waitFor(/first render complete/, timeoutMs);
  await Promise.race([served, new Promise((r) => setTimeout(r, 200))]);
  return { proc, readyAt, metricsUrl };
}

/** Heap figures from the agent's own /metrics (prom-client's process metrics), MB. */
export async function heapFromMetrics(url: string | undefined): Promise<{ heapUsedMB?: number; externalMB?: number }> {
  if (!url) return {};
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(3000) })).text();
    const get = (name: string): number | undefined => {
      const m = new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(text);
      return m ? Math.round((Number(m[1]) / 1048576) * 10) / 10 : undefined;
    };
    const used = get('nodejs_heap_size_used_bytes');
    const ext = get('nodejs_external_memory_bytes');
    return { ...(used !== undefined ? { heapUsedMB: used } : {}), ...(ext !== undefined ? { externalMB: ext } : {}) };
  } catch {
    return {};
  }
}

// --- the bundle ---------------------------------------------------------------------

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * dist/secrets-agent.mjs, (re)built with `npm run build` when it is missing or
 * older than the sources. BENCH_BUNDLE=path uses another file instead.
 */
export async function ensureBundle(notes: string[]): Promise<string | undefined> {
  if (process.env.BENCH_BUNDLE) {
    notes.push(`bundle: ${process.env.BENCH_BUNDLE} (BENCH_BUNDLE)`);
    return process.env.BENCH_BUNDLE;
  }
  const dist = join(REPO, 'dist/secrets-agent.mjs');
  const buildScript = join(REPO, 'scripts/build.ts');
  const stale = !existsSync(dist) || statSync(dist).mtimeMs < Math.max(newestMtime(join(REPO, 'agent')), statSync(join(REPO, 'package-lock.json')).mtimeMs);
  if (existsSync(buildScript) && stale) {
    try {
      await runToEnd('npm', ['run', 'build', '--silent'], { timeoutMs: 120_000 });
    } catch (err) {
      notes.push(`bundle rows skipped: npm run build failed: ${(err as Error).message.split('\n').slice(0, 3).join(' ')}`);
      return undefined;
    }
  }
  if (existsSync(dist)) return dist;
  notes.push('bundle rows skipped: dist/secrets-agent.mjs does not exist and there is no scripts/build.ts yet');
  return undefined;
}

/** The aws CLI executable itself (not a pyenv shim, whose own start-up is not the CLI's cost). */
export function awsCli(): string | undefined {
  for (const [cmd, args] of [
    ['pyenv', ['which', 'aws']],
    ['sh', ['-c', 'command -v aws']],
  ] as const) {
    try {
      const path = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      if (path) return path;
    } catch {
      // try the next
    }
  }
  return undefined;
}
