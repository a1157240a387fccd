// The secret source the config names: AWS (Secrets Manager and SSM Parameter
// Store, one identity) or a local file.
//
// The `aws` source is one SecretSource that routes each spec by its kind
// (types.ts kindOf): `secret` to Secrets Manager (aws.ts), `parameter` and
// `parameterPath` to Parameter Store (ssm.ts). Both clients come from one
// AwsClientSetup (aws-client.ts): same region, deadlines, credential chain and
// metrics plugin. The SSM client (and its SDK) is loaded on the first
// parameter spec only, so a Secrets Manager-only agent starts as before.
//
// The contract every source keeps is SecretSource (source/source.ts: what each
// method returns and how it throws); createSource throws SetupError when the
// source cannot work where the agent runs (no AWS region).
//
// Failover (source.failoverRegion): a second set of clients for that region,
// from the same setup (same identity and cached credentials; STS in the
// region in use). A read (value or check) whose primary answer is an outage
// (a server error, timeout or network error after the SDK's retries, or a
// transient credential failure: isOutage) is sent again to the failover
// region: a secret or parameter of the same name, an ARN with its region
// replaced (inRegion). Terminal errors (AccessDenied, not found) and
// throttling never fail over. The primary's clients then have shorter
// deadlines (aws-client.ts FAILOVER_DEADLINES: 2 attempts of 2 s), so a
// primary that hangs fails over after ~4 s, not ~31 s. Every read starts at the primary: there is no
// sticky state but the log's. A secret served from the failover region is
// logged once when it switches there and once when the primary answers for it
// again, and counted (secrets_agent_failover_total). Every value of the aws
// source carries the region that served it (SecretValue.region, meta.region).
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import { kindOf, type AgentConfig, type SecretMetadata, type SecretSpec, type SecretValue } from '../types.ts';
import { SetupError, SourceError } from '../errors.ts';
import pLimit from 'p-limit';
import { AwsSource } from './aws.ts';
import { createAwsClientSetup, describeAwsIdentity, FAILOVER_DEADLINES, resolveRegion, type AwsClientSetup } from './aws-client.ts';
import { classifyAwsError } from './classify.ts';
import { FileSource } from './file.ts';
import type { SecretSource, FetchResult } from './source.ts';
import type { SsmSource } from './ssm.ts';

export type { SecretSource, FetchResult } from './source.ts';

/** Per-spec checks run at once when the Secrets Manager backend has no describeMany. */
const DESCRIBE_CONCURRENCY = 10;

const isSsm = (s: SecretSpec): boolean => kindOf(s) !== 'secret';

type Described = SecretMetadata | SourceError;

/** The result categories (classify.ts) that are an outage of the region, not a problem of the request. */
const OUTAGES: ReadonlySet<string> = new Set(['server_error', 'timeout', 'network_error']);

/** Is this failure one the failover region may not share: the primary is down, slow or unreachable? */
export function isOutage(err: unknown): err is SourceError {
  if (!(err instanceof SourceError) || !err.transient) return false;
  if (err.code === 'CredentialsError') return true; // transient: STS (of the primary region) or the Pod Identity agent did not answer
  return OUTAGES.has(classifyAwsError(err.cause ?? err));
}

/** The spec as the failover region knows it: a name stays; an ARN gets the region replaced. */
export function inRegion(spec: SecretSpec, region: string): SecretSpec {
  const m = /^(arn:aws[a-z-]*:(?:secretsmanager|ssm):)[a-z0-9-]+(:.*)$/.exec(spec.id);
  return m ? { ...spec, id: `${m[1]}${region}${m[2]}` } : spec;
}

/** Secrets Manager and Parameter Store clients of one region. */
class RegionBackends {
  readonly region: string;
  readonly #setup: AwsClientSetup;
  readonly #sm: SecretSource;
  #ssm: Promise<SsmSource> | undefined;
  usesSsm: boolean;

  constructor(specs: readonly SecretSpec[], setup: AwsClientSetup, log: Logger, batchChecks: boolean) {
    this.region = setup.region;
    this.#setup = setup;
    this.#sm = new AwsSource(specs, { log, setup, ...(batchChecks ? { batchChecks: true } : {}) });
    this.usesSsm = specs.some(isSsm);
  }

  #ssmSource(): Promise<SsmSource> {
    this.usesSsm = true;
    this.#ssm ??= import('./ssm.ts').then(({ SsmSource }) => new SsmSource(this.#setup));
    return this.#ssm;
  }

  async fetchAll(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, FetchResult>> {
    const ssm = specs.filter(isSsm);
    const sm = specs.filter((s) => !isSsm(s));
    const parts = await Promise.all([
      sm.length > 0 ? this.#sm.fetchAll(sm, signal) : new Map<string, FetchResult>(),
      ssm.length > 0 ? (await this.#ssmSource()).fetchAll(ssm, signal) : new Map<string, FetchResult>(),
    ]);
    return new Map(parts.flatMap((m) => [...m]));
  }

  async fetch(spec: SecretSpec, signal?: AbortSignal): Promise<SecretValue> {
    return isSsm(spec) ? (await this.#ssmSource()).fetch(spec, signal) : this.#sm.fetch(spec, signal);
  }

  async describe(spec: SecretSpec, signal?: AbortSignal): Promise<SecretMetadata> {
    return isSsm(spec) ? (await this.#ssmSource()).describe(spec, signal) : this.#sm.describe(spec, signal);
  }

  async describeMany(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, Described>> {
    const ssm = specs.filter(isSsm);
    const sm = specs.filter((s) => !isSsm(s));
    const parts = await Promise.all([
      sm.length === 0 ? new Map<string, Described>() : this.#describeSm(sm, signal),
      ssm.length === 0 ? new Map<string, Described>() : (await this.#ssmSource()).describeMany(ssm, signal),
    ]);
    return new Map(parts.flatMap((m) => [...m]));
  }

  async #describeSm(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, Described>> {
    if (this.#sm.describeMany) return this.#sm.describeMany(specs, signal);
    const out = new Map<string, Described>();
    await pLimit(DESCRIBE_CONCURRENCY).map(specs, async (spec) => {
      try {
        out.set(spec.name, await this.#sm.describe(spec, signal));
      } catch (err) {
        out.set(spec.name, err as SourceError);
      }
    });
    return out;
  }

  close(): void {
    this.#sm.close();
    void this.#ssm?.then((s) => s.close());
  }
}

export interface AwsRoutingOptions {
  batchChecks?: boolean;
  /** source.failoverRegion: a second region read when the primary has an outage. */
  failoverRegion?: string;
  /** Counts reads served by the failover region. */
  metrics?: AgentMetrics;
}

/** Secrets Manager and Parameter Store behind one SecretSource, with an optional failover region. */
export class AwsRoutingSource implements SecretSource {
  readonly kind = 'aws' as const;
  readonly #setup: AwsClientSetup;
  readonly #log: Logger;
  readonly #metrics: AgentMetrics | undefined;
  readonly #primary: RegionBackends;
  readonly #failover: RegionBackends | undefined;
  /** Local names whose last read was served by the failover region (for the once-per-switch log). */
  readonly #onFailover = new Set<string>();

  constructor(specs: readonly SecretSpec[], setup: AwsClientSetup, log: Logger, options: AwsRoutingOptions = {}) {
    this.#setup = setup;
    this.#log = log;
    this.#metrics = options.metrics;
    const batch = options.batchChecks === true;
    const fo = options.failoverRegion;
    // With a failover region waiting, the primary gives up sooner (FAILOVER_DEADLINES): bounded time to failover.
    this.#primary = new RegionBackends(specs, fo ? setup.withDeadlines(FAILOVER_DEADLINES) : setup, log, batch);
    this.#failover = fo ? new RegionBackends(specs.map((s) => inRegion(s, fo)), setup.forRegion(fo), log, batch) : undefined;
  }

  /** Which region served this read: logs a switch, counts a failover. */
  #served(spec: SecretSpec, region: string, primaryError?: SourceError): void {
    if (primaryError) {
      this.#metrics?.secretFailedOver(spec.name);
      if (this.#onFailover.has(spec.name)) return;
      this.#onFailover.add(spec.name);
      this.#log.warn(
        { secret: spec.name, code: primaryError.code, region, primaryRegion: this.#primary.region },
        `primary region ${this.#primary.region} failed reading secret "${spec.name}" (${spec.id}): ${primaryError.code}; ` +
          `served from the failover region ${region}; every read tries the primary first`,
      );
    } else if (this.#onFailover.delete(spec.name)) {
      this.#log.info(
        { secret: spec.name, region },
        `secret "${spec.name}" (${spec.id}) is read from the primary region ${region} again (was served from the failover region ${this.#failover?.region ?? ''})`,
      );
    }
  }

  #value(spec: SecretSpec, v: SecretValue, region: string, primaryError?: SourceError): SecretValue {
    this.#served(spec, region, primaryError);
    return { ...v, region };
  }

  /** Both regions failed: the primary's error, with what the failover region said. */
  #bothFailed(primary: SourceError, failover: unknown, spec: SecretSpec): SourceError {
    const detail = (e: SourceError): string => {
      const prefix = `secret "${e.secret}" (${e.secretId}): `;
      return e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
    };
    const fo = failover instanceof SourceError ? `${failover.code}: ${detail(failover)}` : String(failover);
    return new SourceError(
      {
        secret: spec.name,
        secretId: spec.id,
        code: primary.code,
        transient: true,
        message: `${detail(primary)}; the failover region ${this.#failover?.region ?? ''} failed too: ${fo}`,
      },
      { cause: primary },
    );
  }

  #mayFailOver(err: unknown, signal?: AbortSignal): err is SourceError {
    return this.#failover !== undefined && !signal?.aborted && isOutage(err);
  }

  async fetchAll(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, FetchResult>> {
    const results = await this.#primary.fetchAll(specs, signal);
    const out = new Map<string, FetchResult>();
    const down: SecretSpec[] = [];
    for (const spec of specs) {
      const r = results.get(spec.name);
      if (r === undefined) continue;
      if (r instanceof Error) {
        if (this.#mayFailOver(r, signal)) down.push(spec);
        else out.set(spec.name, r);
      } else {
        out.set(spec.name, this.#value(spec, r, this.#primary.region));
      }
    }
    if (down.length > 0 && this.#failover) {
      const region = this.#failover.region;
      const fo = await this.#failover.fetchAll(down.map((s) => inRegion(s, region)), signal);
      for (const spec of down) {
        const primary = results.get(spec.name) as SourceError;
        const r = fo.get(spec.name);
        out.set(spec.name, r === undefined || r instanceof Error ? this.#bothFailed(primary, r, spec) : this.#value(spec, r, region, primary));
      }
    }
    return out;
  }

  async fetch(spec: SecretSpec, signal?: AbortSignal): Promise<SecretValue> {
    let value: SecretValue;
    try {
      value = await this.#primary.fetch(spec, signal);
    } catch (err) {
      if (!this.#mayFailOver(err, signal) || !this.#failover) throw err;
      const region = this.#failover.region;
      try {
        value = await this.#failover.fetch(inRegion(spec, region), signal);
      } catch (foErr) {
        throw this.#bothFailed(err, foErr, spec);
      }
      return this.#value(spec, value, region, err);
    }
    return this.#value(spec, value, this.#primary.region);
  }

  async describe(spec: SecretSpec, signal?: AbortSignal): Promise<SecretMetadata> {
    let meta: SecretMetadata;
    try {
      meta = await this.#primary.describe(spec, signal);
    } catch (err) {
      if (!this.#mayFailOver(err, signal) || !this.#failover) throw err;
      const region = this.#failover.region;
      try {
        meta = await this.#failover.describe(inRegion(spec, region), signal);
      } catch (foErr) {
        throw this.#bothFailed(err, foErr, spec);
      }
      this.#served(spec, region, err);
      return meta;
    }
    this.#served(spec, this.#primary.region);
    return meta;
  }

  /** Metadata of several specs in as few requests as the backend allows (no value, no decrypt). Never throws for one spec's failure: each local name maps to its metadata or its SourceError. */
  async describeMany(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, Described>> {
    const results = await this.#primary.describeMany(specs, signal);
    const down = specs.filter((s) => this.#mayFailOver(results.get(s.name), signal));
    for (const spec of specs) {
      const r = results.get(spec.name);
      if (r !== undefined && !(r instanceof Error)) this.#served(spec, this.#primary.region);
    }
    if (down.length > 0 && this.#failover) {
      const region = this.#failover.region;
      const fo = await this.#failover.describeMany(down.map((s) => inRegion(s, region)), signal);
      for (const spec of down) {
        const primary = results.get(spec.name) as SourceError;
        const r = fo.get(spec.name);
        if (r === undefined || r instanceof Error) {
          results.set(spec.name, this.#bothFailed(primary, r, spec));
        } else {
          this.#served(spec, region, primary);
          results.set(spec.name, r);
        }
      }
    }
    return results;
  }

  describeIdentity(): Record<string, string> {
    const id = describeAwsIdentity(this.#setup, { ssm: this.#primary.usesSsm || this.#failover?.usesSsm === true });
    if (this.#failover) id.failoverRegion = this.#failover.region;
    return id;
  }

  close(): void {
    this.#primary.close();
    this.#failover?.close();
  }
}

/**
 * The configured source; AWS clients carry the metrics plugin when metrics are given.
 * @throws SetupError when no AWS region can be found (config, environment or an ARN id), or
 * when the pod has no AWS identity of its own and source.allowNodeRole is not set:
 * operator mistakes, reported as such (exit 2) by `init` and `run` alike.
 */
export async function createSource(config: AgentConfig, log: Logger, metrics?: AgentMetrics): Promise<SecretSource> {
  if (config.source.type === 'file') return new FileSource(config.source.path, log);
  if (resolveRegion(config.source.region, config.secrets) === undefined) {
    throw new SetupError(
      'source.region',
      'no AWS region for the aws source: none in the config, the environment or an ARN id; set source.region in the config, or AWS_REGION in the container environment',
    );
  }
  const plugins = [];
  if (metrics) {
    const { awsMetricsPlugin } = await import('./aws-metrics.ts');
    plugins.push(awsMetricsPlugin(metrics));
  }
  const { failoverRegion } = config.source;
  if (failoverRegion !== undefined && failoverRegion === resolveRegion(config.source.region, config.secrets)) {
    throw new SetupError(
      'source.failoverRegion',
      `source.failoverRegion ${failoverRegion} is the primary region itself (from the environment or an ARN id); name a second region holding replicas of the secrets, or remove failoverRegion`,
    );
  }
  const setup = createAwsClientSetup(config.secrets, {
    ...(config.source.region ? { region: config.source.region } : {}),
    ...(config.source.assumeRoleArn ? { assumeRoleArn: config.source.assumeRoleArn } : {}),
    plugins,
    allowNodeRole: config.source.allowNodeRole === true,
    log,
    ...(metrics ? { onCredentials: (c) => { if (c.expiration) metrics.credentialsExpire(c.expiration); } } : {}),
  });
  if (setup.identity === 'node-role') {
    log.warn(
      { key: 'source.allowNodeRole', identity: 'node-role' },
      "source.allowNodeRole is true and the pod has no AWS identity of its own: using the default credential chain, instance metadata included (the node's instance role, shared by every pod on the node); give the pod its own role (IRSA or EKS Pod Identity) and remove allowNodeRole",
    );
  }
  return new AwsRoutingSource(config.secrets, setup, log, {
    batchChecks: config.refresh.batchChecks === true,
    ...(failoverRegion ? { failoverRegion } : {}),
    ...(metrics ? { metrics } : {}),
  });
}
