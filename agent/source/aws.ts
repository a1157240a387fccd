// AWS Secrets Manager as a SecretSource. The AWS facts below, with their
// sources: docs/aws.md.
//
// Cost model (quotas and prices): DescribeSecret for checks (40,000 TPS, no KMS
// decrypt), GetSecretValue only when the stage moved, BatchGetSecretValue for
// the first load only (its 100 TPS account quota would not survive a fleet
// polling with it).
//
// Deadlines: the SDK sets none (NodeHttpHandler has no connection or request
// timeout, and a hanging credential endpoint is not aborted by abortSignal), so
// every request gets connection/request timeouts with throwOnRequestTimeout,
// and credential resolution gets its own overall deadline.
import {
  BatchGetSecretValueCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  SecretsManagerClient,
  type SecretListEntry,
  type SecretValueEntry,
  type GetSecretValueCommandOutput,
} from '@aws-sdk/client-secrets-manager';
import { fromNodeProviderChain, fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { readFile } from 'node:fs/promises';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import pLimit from 'p-limit';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, Pluggable } from '@smithy/types';
import { Agent as HttpAgent, get as httpGetRaw } from 'node:http';
import { Agent as HttpsAgent, get as httpsGet } from 'node:https';
import { CredentialsError, SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { SecretMetadata, SecretSpec, SecretValue } from '../types.ts';
import { classifyAwsError, errorCode, isTerminal, toSourceError } from './classify.ts';
import type { FetchResult, SecretSource } from './source.ts';

export interface AwsSourceOptions {
  region?: string;
  assumeRoleArn?: string;
  log: Logger;
  /** Client plugins (e.g. metrics) added to Secrets Manager and to the STS clients used for credentials. */
  // A plugin must fit both the Secrets Manager and the STS clients, so it is typed for any client.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  plugins?: readonly Pluggable<any, any>[];
  /** Called with every credential set resolved (for the expiration metric). */
  onCredentials?: (creds: AwsCredentialIdentity) => void;
  /** Called when credential resolution fails or times out. */
  onCredentialsError?: (err: CredentialsError) => void;
  /** @default 3000 */
  connectionTimeoutMs?: number;
  /** @default 10000 */
  requestTimeoutMs?: number;
  /** Overall deadline for resolving credentials (STS / Pod Identity). @default 15000 */
  credentialsTimeoutMs?: number;
  /** Max parallel GetSecretValue calls when not batching. @default 10 */
  concurrency?: number;
  /** refresh.batchChecks: describeMany through ListSecrets (see AwsSource.describeMany). */
  batchChecks?: boolean;
}

const BATCH_SIZE = 20;
const DEFAULT_STAGE = 'AWSCURRENT';

/** Region: config, then the environment, then the region of an ARN id. */
export function resolveRegion(configured: string | undefined, specs: readonly SecretSpec[]): string | undefined {
  if (configured) return configured;
  const env = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION;
  if (env) return env;
  for (const s of specs) {
    const m = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):/.exec(s.id);
    if (m?.[1]) return m[1];
  }
  return undefined;
}

/** Wrap a provider with an overall deadline: the SDK has none for credential resolution. */
function withDeadline(
  provider: AwsCredentialIdentityProvider,
  ms: number,
  onOk?: (c: AwsCredentialIdentity) => void,
  onErr?: (e: CredentialsError) => void,
): AwsCredentialIdentityProvider {
  return async (props) => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new CredentialsError(`timed out after ${ms / 1000}s resolving AWS credentials (STS or the Pod Identity agent did not answer)`, true)),
        ms,
      );
      timer.unref();
    });
    try {
      const creds = await Promise.race([provider(props), deadline]);
      onOk?.(creds);
      return creds;
    } catch (err) {
      const e = err instanceof CredentialsError ? err : credentialsError(err);
      onErr?.(e);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * EKS Pod Identity: GET the credentials from the Pod Identity agent ourselves
 * (the SDK's behaviour: docs/aws.md, EKS Pod Identity).
 *
 * Two SDK behaviours make its own provider unfit for a daemon: it sends the
 * token file as the raw Authorization header, so a trailing newline (which many
 * tools add) fails every request with ERR_INVALID_CHAR; and its 1-2 s timeout
 * only logs a warning (plain text on stderr) while the request hangs on, one
 * leaked socket per attempt. Here the token file is re-read on every fetch (the
 * kubelet rotates it) and trimmed, and each request is aborted at its deadline.
 */
const POD_IDENTITY_HOSTS = new Set(['169.254.170.2', '169.254.170.23', '[fd00:ec2::23]', 'localhost', '127.0.0.1', '[::1]']);

/**
 * One GET with a hard deadline (the socket is destroyed, nothing lingers). node:http
 * rather than fetch: fetch would load undici (~13 MB, ~45 ms) for this one request.
 */
function httpGet(url: URL, authorization: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? httpsGet : httpGetRaw;
    const req = get(url, { headers: { Authorization: authorization }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })), timeoutMs);
    timer.unref();
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function podIdentityProvider(fullUri: string, tokenFile: string, timeoutMs = 2000): AwsCredentialIdentityProvider {
  const url = new URL(fullUri);
  // The SDK's rule: https anywhere, plain http only to the link-local agent or loopback.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (POD_IDENTITY_HOSTS.has(url.hostname) || url.hostname.startsWith('127.')))) {
    throw new CredentialsError(`AWS_CONTAINER_CREDENTIALS_FULL_URI ${url.origin} is not allowed: use https, or the EKS Pod Identity agent (169.254.170.23)`, false);
  }
  return async () => {
    const token = (await readFile(tokenFile, 'utf8')).trim();
    if (!token) throw new CredentialsError(`the Pod Identity token file ${tokenFile} is empty`, true);
    let res: { status: number; body: string };
    try {
      res = await httpGet(url, token, timeoutMs);
    } catch (err) {
      const e = err as Error & { code?: string };
      const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.code ?? e.name);
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} failed: ${why}`, true, { cause: err });
    }
    const body = res.body;
    if (res.status < 200 || res.status > 299) {
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} answered HTTP ${res.status}`, res.status >= 500 || res.status === 429);
    }
    let c: { AccessKeyId?: unknown; SecretAccessKey?: unknown; Token?: unknown; Expiration?: unknown; AccountId?: unknown };
    try {
      c = JSON.parse(body) as typeof c;
    } catch {
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} answered something that is not JSON`, true);
    }
    if (typeof c.AccessKeyId !== 'string' || typeof c.SecretAccessKey !== 'string' || typeof c.Token !== 'string') {
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} answered without AccessKeyId/SecretAccessKey/Token`, true);
    }
    return {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.Token,
      ...(typeof c.Expiration === 'string' ? { expiration: new Date(c.Expiration) } : {}),
      ...(typeof c.AccountId === 'string' ? { accountId: c.AccountId } : {}),
    };
  };
}

/** Pod Identity is what the default chain would pick: no env keys, no IRSA, a full URI and a token file. */
function podIdentityEnv(env: NodeJS.ProcessEnv): { fullUri: string; tokenFile: string } | undefined {
  if (env.AWS_ACCESS_KEY_ID || (env.AWS_ROLE_ARN && env.AWS_WEB_IDENTITY_TOKEN_FILE)) return undefined;
  const fullUri = env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
  const tokenFile = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
  return fullUri && tokenFile ? { fullUri, tokenFile } : undefined;
}

function credentialsError(err: unknown): CredentialsError {
  const code = errorCode(err);
  const raw = err instanceof Error ? err.message : String(err);
  let hint = '';
  if (code === 'InvalidIdentityToken' || /web identity|token/i.test(raw)) {
    hint = ' — check AWS_WEB_IDENTITY_TOKEN_FILE (the projected service-account token) and the role trust policy (k8s-examples/iam/irsa-trust-policy.json)';
  } else if (/ENOENT/.test(raw)) {
    hint = ' — a credentials file named in the environment does not exist';
  } else if (/Could not load credentials/i.test(raw)) {
    hint = ' — no IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), Pod Identity or other AWS credentials were found in this container';
  }
  const terminal = isTerminal(code) || /ENOENT|Could not load credentials/i.test(raw);
  const detail = raw.startsWith(code) ? raw.slice(0, 300) : `${code}: ${raw.slice(0, 300)}`;
  return new CredentialsError(`cannot get AWS credentials: ${detail}${hint}`, !terminal, { cause: err });
}

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
function matches(id: string, v: { Name?: string | undefined; ARN?: string | undefined }): boolean {
  return id === v.Name || id === v.ARN || (v.ARN !== undefined && id.startsWith('arn:') && v.ARN.startsWith(id + '-'));
}

export class AwsSource implements SecretSource {
  readonly kind = 'aws' as const;
  readonly #client: SecretsManagerClient;
  readonly #log: Logger;
  readonly #region: string;
  readonly #assumeRoleArn: string | undefined;
  readonly #concurrency: number;
  /** Set once BatchGetSecretValue was refused (AccessDenied): later loads go straight to GetSecretValue. */
  #batchRefused = false;

  constructor(specs: readonly SecretSpec[], options: AwsSourceOptions) {
    this.#log = options.log;
    const region = resolveRegion(options.region, specs);
    if (!region) {
      throw new CredentialsError('no AWS region: set source.region in the config, or AWS_REGION in the container environment', false);
    }
    this.#region = region;
    this.#assumeRoleArn = options.assumeRoleArn;
    this.#concurrency = options.concurrency ?? 10;
    const keepAlive = { keepAlive: true, maxSockets: 50 };
    // One handler for Secrets Manager and the nested STS clients: both get the deadlines.
    const requestHandler = new NodeHttpHandler({
      connectionTimeout: options.connectionTimeoutMs ?? 3000,
      requestTimeout: options.requestTimeoutMs ?? 10_000,
      throwOnRequestTimeout: true,
      httpAgent: new HttpAgent(keepAlive),
      httpsAgent: new HttpsAgent(keepAlive),
    });
    const plugins = [...(options.plugins ?? [])];
    const stsConfig = { region, requestHandler };
    const pod = podIdentityEnv(process.env);
    let provider: AwsCredentialIdentityProvider = pod
      ? podIdentityProvider(pod.fullUri, pod.tokenFile)
      : fromNodeProviderChain({
          clientConfig: stsConfig,
          clientPlugins: plugins,
          // Pod Identity agent: the SDK's default 1 s timeout only warns; our deadline below aborts.
          timeout: 2000,
          maxRetries: 2,
        });
    if (options.assumeRoleArn) {
      provider = fromTemporaryCredentials({
        params: { RoleArn: options.assumeRoleArn, RoleSessionName: 'secrets-agent', DurationSeconds: 3600 },
        masterCredentials: provider,
        clientConfig: stsConfig,
        clientPlugins: plugins,
      });
    }
    this.#client = new SecretsManagerClient({
      region,
      requestHandler,
      maxAttempts: 3,
      credentials: withDeadline(provider, options.credentialsTimeoutMs ?? 15_000, options.onCredentials, options.onCredentialsError),
    });
    // eslint-disable-next-line @typescript-eslint/no-unsafe-argument -- see AwsSourceOptions.plugins
    for (const p of plugins) this.#client.middlewareStack.use(p);
    if (options.batchChecks) this.describeMany = (specs, signal) => this.#listMany(specs, signal);
  }

  describeIdentity(): Record<string, string> {
    const env = process.env;
    const id: Record<string, string> = { source: 'aws', region: this.#region };
    if (env.AWS_ROLE_ARN && env.AWS_WEB_IDENTITY_TOKEN_FILE) {
      id.credentials = 'web-identity (IRSA)';
      id.roleArn = env.AWS_ROLE_ARN;
      id.tokenFile = env.AWS_WEB_IDENTITY_TOKEN_FILE;
    } else if (env.AWS_CONTAINER_CREDENTIALS_FULL_URI || env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) {
      id.credentials = 'container (EKS Pod Identity)';
      id.endpoint = env.AWS_CONTAINER_CREDENTIALS_FULL_URI ?? 'relative';
    } else if (env.AWS_ACCESS_KEY_ID) {
      id.credentials = 'environment keys';
    } else {
      id.credentials = 'default chain (profile / instance metadata)';
    }
    if (this.#assumeRoleArn) id.assumeRoleArn = this.#assumeRoleArn;
    if (env.AWS_ENDPOINT_URL_SECRETS_MANAGER || env.AWS_ENDPOINT_URL) {
      id.endpoint = env.AWS_ENDPOINT_URL_SECRETS_MANAGER ?? env.AWS_ENDPOINT_URL ?? '';
    }
    return id;
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
    if (err instanceof CredentialsError) {
      return new SourceError(
        { secret: spec.name, secretId: spec.id, code: 'CredentialsError', transient: err.transient, message: err.message },
        { cause: err },
      );
    }
    // Errors the SDK wraps around a credential failure surface with the provider's name.
    if (err instanceof Error && err.name === 'CredentialsProviderError') {
      const ce = credentialsError(err);
      return new SourceError({ secret: spec.name, secretId: spec.id, code: 'CredentialsError', transient: ce.transient, message: ce.message }, { cause: err });
    }
    return toSourceError(err, spec.name, spec.id);
  }

  close(): void {
    this.#client.destroy();
  }

  // refresh.batchChecks: ListSecrets as a batched check (docs/aws.md, "ListSecrets").

  /**
   * Set only with refresh.batchChecks (the runner then groups checks that fall
   * due together): the metadata of several secrets from one ListSecrets per 10,
   * DescribeSecret for the rest. See #listMany.
   */
  readonly describeMany: ((specs: readonly SecretSpec[], signal?: AbortSignal) => Promise<Map<string, SecretMetadata | SourceError>>) | undefined;
  /** ListSecrets was refused (AccessDenied): logged once, DescribeSecret for the rest of the run. */
  #listRefused = false;
  /** The account ListSecrets answers for (from the ARNs it returned): ARN specs of another account are described. */
  #listAccount: string | undefined;
  /** ARN ids ListSecrets did not return (another account, most likely): described from then on. */
  readonly #unlisted = new Set<string>();

  /**
   * ListSecrets with a `name` filter of up to LIST_FILTER_VALUES prefixes (a
   * prefix match: the exact names, or ARNs for ARN specs, are picked here) and
   * IncludePlannedDeletion, mapped to SecretMetadata as describe() maps
   * DescribeSecret. DescribeSecret instead, per secret: for ARNs of another
   * region or account (an ARN not listed once is described from then on: the
   * list is of the caller's account), for secrets the list did not answer, for the whole
   * chunk when ListSecrets fails (throttled or down: this round; refused:
   * logged once, and for the rest of the run). Never throws for one secret.
   */
  async #listMany(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, SecretMetadata | SourceError>> {
    const results = new Map<string, SecretMetadata | SourceError>();
    const describeOne: SecretSpec[] = [];
    const listed = new Map<string, SecretSpec[]>(); // filter value -> specs
    for (const spec of specs) {
      const prefix = this.#listRefused ? undefined : this.#listPrefix(spec);
      if (prefix === undefined) describeOne.push(spec);
      else listed.set(prefix, [...(listed.get(prefix) ?? []), spec]);
    }
    const prefixes = [...listed.keys()];
    const chunks: string[][] = [];
    for (let i = 0; i < prefixes.length; i += LIST_FILTER_VALUES) chunks.push(prefixes.slice(i, i + LIST_FILTER_VALUES));
    await pLimit(2).map(chunks, async (chunk) => {
      const chunkSpecs = chunk.flatMap((p) => listed.get(p) ?? []);
      const answer = await this.#list(chunk, chunkSpecs.length, signal);
      if (!answer) {
        describeOne.push(...chunkSpecs);
        return;
      }
      for (const spec of chunkSpecs) {
        const entry = answer.entries.find((e) => matches(spec.id, e));
        if (entry) {
          results.set(spec.name, listMetadata(spec, entry));
        } else {
          // An ARN not listed is most likely another account's; a name may be too new for ListSecrets yet
          // (eventually consistent), unless the list was cut short.
          if (spec.id.startsWith('arn:') || !answer.complete) this.#unlisted.add(spec.id);
          describeOne.push(spec);
        }
      }
    });
    await pLimit(this.#concurrency).map(describeOne, async (spec) => {
      results.set(spec.name, await this.describe(spec, signal).catch((err: unknown) => this.#wrap(err, spec)));
    });
    return results;
  }

  /** The `name` filter value that lists this spec's secret, or undefined when ListSecrets cannot. */
  #listPrefix(spec: SecretSpec): string | undefined {
    if (this.#unlisted.has(spec.id)) return undefined;
    if (!spec.id.startsWith('arn:')) return spec.id;
    const m = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)$/.exec(spec.id);
    if (!m || m[1] !== this.#region || (this.#listAccount !== undefined && m[2] !== this.#listAccount)) return undefined;
    // A full ARN ends in "-" and 6 random characters that are not part of the name; without them it is still a prefix.
    return (m[3] as string).replace(/-[A-Za-z0-9]{6}$/, '');
  }

  /**
   * The entries ListSecrets has for these name prefixes (complete: all pages
   * read, at most LIST_MAX_PAGES), or undefined when it failed (logged).
   */
  async #list(prefixes: readonly string[], secrets: number, signal?: AbortSignal): Promise<{ entries: SecretListEntry[]; complete: boolean } | undefined> {
    const entries: SecretListEntry[] = [];
    let nextToken: string | undefined;
    try {
      let pages = 0;
      do {
        const res = await this.#client.send(
          new ListSecretsCommand({
            Filters: [{ Key: 'name', Values: [...prefixes] }],
            IncludePlannedDeletion: true,
            MaxResults: 100,
            ...(nextToken ? { NextToken: nextToken } : {}),
          }),
          signal ? { abortSignal: signal } : {},
        );
        entries.push(...(res.SecretList ?? []));
        nextToken = res.NextToken ?? undefined;
      } while (nextToken && ++pages < LIST_MAX_PAGES);
    } catch (err) {
      if (signal?.aborted) throw err;
      const code = errorCode(err);
      if (code === 'AccessDeniedException' || classifyAwsError(err) === 'access_denied') {
        if (!this.#listRefused) {
          this.#log.warn(
            { code },
            `ListSecrets refused checking ${secrets} secret(s) in Secrets Manager (refresh.batchChecks): ${code}; ` +
              'checking each secret with DescribeSecret for the rest of this run; grant secretsmanager:ListSecrets on "*" ' +
              '(k8s-examples/iam/iam-policy-batch-checks.json) or set refresh.batchChecks: false',
          );
        }
        this.#listRefused = true;
      } else {
        this.#log.warn(
          { code, result: classifyAwsError(err) },
          `ListSecrets failed checking ${secrets} secret(s) in Secrets Manager (refresh.batchChecks): ${code}; checking them with DescribeSecret this round`,
        );
      }
      return undefined;
    }
    for (const e of entries) {
      const account = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:(\d{12}):/.exec(e.ARN ?? '')?.[1];
      if (account) this.#listAccount ??= account;
    }
    return { entries, complete: nextToken === undefined };
  }
}

/** ListSecrets: at most 10 values in one filter ("ListSecrets", Filter). */
const LIST_FILTER_VALUES = 10;
/** Pages of 100 entries read for one chunk; a secret not found in a list cut short is described from then on. */
const LIST_MAX_PAGES = 3;

/** A ListSecrets entry as SecretMetadata, field by field as AwsSource.describe maps DescribeSecret. */
function listMetadata(spec: SecretSpec, e: SecretListEntry): SecretMetadata {
  const stage = spec.versionStage ?? DEFAULT_STAGE;
  let versionIdForStage: string | undefined;
  for (const [versionId, stages] of Object.entries(e.SecretVersionsToStages ?? {})) {
    if (stages.includes(stage)) versionIdForStage = versionId;
  }
  return {
    arn: e.ARN ?? '',
    name: e.Name ?? '',
    ...(spec.versionId ? { versionIdForStage: spec.versionId } : versionIdForStage ? { versionIdForStage } : {}),
    rotationEnabled: e.RotationEnabled === true,
    ...(e.NextRotationDate ? { nextRotationDate: e.NextRotationDate } : {}),
    deleted: e.DeletedDate !== undefined,
    ...(e.DeletedDate ? { deletedDate: e.DeletedDate } : {}),
  };
}
