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
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import { kindOf, type AgentConfig, type SecretMetadata, type SecretSpec, type SecretValue } from '../types.ts';
import { SetupError, type SourceError } from '../errors.ts';
import pLimit from 'p-limit';
import { AwsSource } from './aws.ts';
import { createAwsClientSetup, describeAwsIdentity, resolveRegion, type AwsClientSetup } from './aws-client.ts';
import { FileSource } from './file.ts';
import type { SecretSource, FetchResult } from './source.ts';
import type { SsmSource } from './ssm.ts';

export type { SecretSource, FetchResult } from './source.ts';

/** Per-spec checks run at once when the Secrets Manager backend has no describeMany. */
const DESCRIBE_CONCURRENCY = 10;

const isSsm = (s: SecretSpec): boolean => kindOf(s) !== 'secret';

/** Secrets Manager and Parameter Store behind one SecretSource. */
export class AwsRoutingSource implements SecretSource {
  readonly kind = 'aws' as const;
  readonly #setup: AwsClientSetup;
  readonly #sm: SecretSource;
  #ssm: Promise<SsmSource> | undefined;
  #usesSsm: boolean;

  constructor(specs: readonly SecretSpec[], setup: AwsClientSetup, log: Logger, options: { batchChecks?: boolean } = {}) {
    this.#setup = setup;
    this.#sm = new AwsSource(specs, { log, setup, ...(options.batchChecks ? { batchChecks: true } : {}) });
    this.#usesSsm = specs.some(isSsm);
  }

  #ssmSource(): Promise<SsmSource> {
    this.#usesSsm = true;
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

  /** Metadata of several specs in as few requests as the backend allows (no value, no decrypt). Never throws for one spec's failure: each local name maps to its metadata or its SourceError. */
  async describeMany(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, SecretMetadata | SourceError>> {
    const ssm = specs.filter(isSsm);
    const sm = specs.filter((s) => !isSsm(s));
    const parts = await Promise.all([
      sm.length === 0 ? new Map<string, SecretMetadata | SourceError>() : this.#describeSm(sm, signal),
      ssm.length === 0 ? new Map<string, SecretMetadata | SourceError>() : (await this.#ssmSource()).describeMany(ssm, signal),
    ]);
    return new Map(parts.flatMap((m) => [...m]));
  }

  async #describeSm(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, SecretMetadata | SourceError>> {
    if (this.#sm.describeMany) return this.#sm.describeMany(specs, signal);
    const out = new Map<string, SecretMetadata | SourceError>();
    await pLimit(DESCRIBE_CONCURRENCY).map(specs, async (spec) => {
      try {
        out.set(spec.name, await this.#sm.describe(spec, signal));
      } catch (err) {
        out.set(spec.name, err as SourceError);
      }
    });
    return out;
  }

  describeIdentity(): Record<string, string> {
    return describeAwsIdentity(this.#setup, { ssm: this.#usesSsm });
  }

  close(): void {
    this.#sm.close();
    void this.#ssm?.then((s) => s.close());
  }
}

/**
 * The configured source; AWS clients carry the metrics plugin when metrics are given.
 * @throws SetupError when no AWS region can be found (config, environment or an ARN id):
 * an operator mistake, reported as such (exit 2) by `init` and `run` alike.
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
  const setup = createAwsClientSetup(config.secrets, {
    ...(config.source.region ? { region: config.source.region } : {}),
    ...(config.source.assumeRoleArn ? { assumeRoleArn: config.source.assumeRoleArn } : {}),
    plugins,
    ...(metrics ? { onCredentials: (c) => { if (c.expiration) metrics.credentialsExpire(c.expiration); } } : {}),
  });
  return new AwsRoutingSource(config.secrets, setup, log, { batchChecks: config.refresh.batchChecks === true });
}
