// AWS Secrets Manager as a SecretSource. The AWS facts below, with their
// sources: docs/aws.md.
//
// Cost model (quotas and prices): DescribeSecret for checks (40,000 TPS, no KMS
// decrypt), GetSecretValue only when the stage moved, BatchGetSecretValue for
// the first load only (its 100 TPS account quota would not survive a fleet
// polling with it).
//
// Region, deadlines, credentials and plugins: the AwsClientSetup of
// aws-client.ts, shared with the SSM client (ssm.ts).
import {
  BatchGetSecretValueCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
  type SecretValueEntry,
  type GetSecretValueCommandOutput,
} from '@aws-sdk/client-secrets-manager';
import pLimit from 'p-limit';
import type { SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { SecretMetadata, SecretSpec, SecretValue } from '../types.ts';
import { createAwsClientSetup, describeAwsIdentity, wrapAwsError, type AwsClientOptions, type AwsClientSetup } from './aws-client.ts';
import { errorCode } from './classify.ts';
import type { FetchResult, SecretSource } from './source.ts';

export interface AwsSourceOptions extends AwsClientOptions {
  log: Logger;
  /** The client setup to share (with the SSM client); made from these options when absent. */
  setup?: AwsClientSetup;
  /** Max parallel GetSecretValue calls when not batching. @default 10 */
  concurrency?: number;
}

const BATCH_SIZE = 20;
const DEFAULT_STAGE = 'AWSCURRENT';

function toValue(out: GetSecretValueCommandOutput | SecretValueEntry): SecretValue {
  const base = {
    arn: out.ARN ?? '',
    name: out.Name ?? '',
    versionId: out.VersionId ?? '',
    versionStages: out.VersionStages ?? [],
    ...(out.CreatedDate ? { createdDate: out.CreatedDate } : {}),
  };
  if (out.SecretString !== undefined) return { ...base, secretString: out.SecretString };
  if (out.SecretBinary !== undefined) return { ...base, secretBinary: out.SecretBinary };
  return { ...base, secretString: '' };
}

/** Does a batch entry answer this configured id (a name, a full ARN, or a partial ARN)? */
function matches(id: string, v: SecretValueEntry): boolean {
  return id === v.Name || id === v.ARN || (v.ARN !== undefined && id.startsWith('arn:') && v.ARN.startsWith(id + '-'));
}

export class AwsSource implements SecretSource {
  readonly kind = 'aws' as const;
  readonly #client: SecretsManagerClient;
  readonly #log: Logger;
  readonly #setup: AwsClientSetup;
  readonly #concurrency: number;
  /** Set once BatchGetSecretValue was refused (AccessDenied): later loads go straight to GetSecretValue. */
  #batchRefused = false;

  constructor(specs: readonly SecretSpec[], options: AwsSourceOptions) {
    this.#log = options.log;
    this.#setup = options.setup ?? createAwsClientSetup(specs, options);
    this.#concurrency = options.concurrency ?? 10;
    this.#client = new SecretsManagerClient(this.#setup.config);
    this.#setup.use(this.#client);
  }

  describeIdentity(): Record<string, string> {
    return describeAwsIdentity(this.#setup, { ssm: false });
  }

  async fetch(spec: SecretSpec, signal?: AbortSignal): Promise<SecretValue> {
    try {
      const out = await this.#client.send(
        new GetSecretValueCommand({
          SecretId: spec.id,
          ...(spec.versionId ? { VersionId: spec.versionId } : { VersionStage: spec.versionStage ?? DEFAULT_STAGE }),
        }),
        signal ? { abortSignal: signal } : {},
      );
      return toValue(out);
    } catch (err) {
      throw this.#wrap(err, spec);
    }
  }

  async describe(spec: SecretSpec, signal?: AbortSignal): Promise<SecretMetadata> {
    try {
      const out = await this.#client.send(new DescribeSecretCommand({ SecretId: spec.id }), signal ? { abortSignal: signal } : {});
      const stage = spec.versionStage ?? DEFAULT_STAGE;
      let versionIdForStage: string | undefined;
      for (const [versionId, stages] of Object.entries(out.VersionIdsToStages ?? {})) {
        if (stages.includes(stage)) versionIdForStage = versionId;
      }
      return {
        arn: out.ARN ?? '',
        name: out.Name ?? '',
        ...(spec.versionId ? { versionIdForStage: spec.versionId } : versionIdForStage ? { versionIdForStage } : {}),
        rotationEnabled: out.RotationEnabled === true,
        ...(out.NextRotationDate ? { nextRotationDate: out.NextRotationDate } : {}),
        deleted: out.DeletedDate !== undefined,
        ...(out.DeletedDate ? { deletedDate: out.DeletedDate } : {}),
      };
    } catch (err) {
      throw this.#wrap(err, spec);
    }
  }

  async fetchAll(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, FetchResult>> {
    const results = new Map<string, FetchResult>();
    // BatchGetSecretValue reads AWSCURRENT only: everything else goes one by one.
    const batchable = specs.filter((s) => !s.versionId && (s.versionStage ?? DEFAULT_STAGE) === DEFAULT_STAGE);
    const single = specs.filter((s) => !batchable.includes(s));
    const leftovers: SecretSpec[] = [...single];
    if (batchable.length > 1 && !this.#batchRefused) {
      const ids = [...new Set(batchable.map((s) => s.id))];
      const chunks: string[][] = [];
      for (let i = 0; i < ids.length; i += BATCH_SIZE) chunks.push(ids.slice(i, i + BATCH_SIZE));
      await pLimit(2).map(chunks, async (chunk) => {
        const answered = await this.#batch(chunk, signal);
        for (const spec of batchable) {
          if (!chunk.includes(spec.id)) continue;
          const got = answered?.get(spec.id);
          if (got === undefined) leftovers.push(spec);
          else results.set(spec.name, got instanceof Error ? this.#wrap(got, spec) : got);
        }
      });
    } else {
      leftovers.push(...batchable);
    }
    await pLimit(this.#concurrency).map(leftovers, async (spec) => {
      try {
        results.set(spec.name, await this.fetch(spec, signal));
      } catch (err) {
        results.set(spec.name, this.#wrap(err, spec));
      }
    });
    return results;
  }

  /**
   * One BatchGetSecretValue call. Returns id -> value or per-secret error, or
   * undefined when the whole batch was refused or throttled (caller falls back
   * to GetSecretValue). Ids the batch did not answer are left out of the map.
   */
  async #batch(ids: readonly string[], signal?: AbortSignal): Promise<Map<string, SecretValue | Error> | undefined> {
    const out = new Map<string, SecretValue | Error>();
    try {
      let nextToken: string | undefined;
      do {
        const res = await this.#client.send(
          new BatchGetSecretValueCommand({ SecretIdList: [...ids], ...(nextToken ? { NextToken: nextToken } : {}) }),
          signal ? { abortSignal: signal } : {},
        );
        for (const v of res.SecretValues ?? []) {
          for (const id of ids) if (matches(id, v)) out.set(id, toValue(v));
        }
        for (const e of res.Errors ?? []) {
          if (!e.SecretId) continue;
          const err = Object.assign(new Error(e.Message ?? e.ErrorCode ?? 'error'), { name: e.ErrorCode ?? 'UnknownError' });
          out.set(e.SecretId, err);
        }
        nextToken = res.NextToken ?? undefined;
      } while (nextToken);
      return out;
    } catch (err) {
      const code = errorCode(err);
      if (code === 'AccessDeniedException') {
        this.#batchRefused = true;
        this.#log.warn({ code }, 'BatchGetSecretValue refused; falling back to GetSecretValue (grant secretsmanager:BatchGetSecretValue on "*" for faster start-up)');
      } else {
        this.#log.warn({ code }, 'BatchGetSecretValue failed; falling back to GetSecretValue for this batch');
      }
      return undefined;
    }
  }

  #wrap(err: unknown, spec: SecretSpec): SourceError {
    return wrapAwsError(err, spec);
  }

  close(): void {
    this.#client.destroy();
  }
}
