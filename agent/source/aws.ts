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
  ListSecretsCommand,
  SecretsManagerClient,
  type SecretListEntry,
  type SecretValueEntry,
  type GetSecretValueCommandOutput,
} from '@aws-sdk/client-secrets-manager';
import pLimit from 'p-limit';
import type { SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { SecretMetadata, SecretSpec, SecretValue } from '../types.ts';
import { createAwsClientSetup, describeAwsIdentity, wrapAwsError, type AwsClientOptions, type AwsClientSetup } from './aws-client.ts';
import { classifyAwsError, errorCode } from './classify.ts';
import type { FetchResult, SecretSource } from './source.ts';

export interface AwsSourceOptions extends AwsClientOptions {
  log: Logger;
  /** The client setup to share (with the SSM client); made from these options when absent. */
  setup?: AwsClientSetup;
  /** Max parallel GetSecretValue calls when not batching. @default 10 */
  concurrency?: number;
  /** refresh.batchChecks: describeMany through ListSecrets (see AwsSource.describeMany). */
  batchChecks?: boolean;
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
function matches(id: string, v: { Name?: string | undefined; ARN?: string | undefined }): boolean {
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
    if (options.batchChecks) this.describeMany = (specs, signal) => this.#listMany(specs, signal);
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
   * Many secrets of the round under one path are listed by the path instead
   * (#folders): one call per 100 entries instead of one per 10 names.
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
    // Many secrets under one path: list the path (one filter value, 100 entries a page) instead of their names.
    for (const folder of this.#folders([...listed.keys()])) {
      const members = [...listed].filter(([name]) => name.startsWith(folder.prefix));
      const answer = await this.#list([folder.prefix], members.length, signal, folder.maxPages);
      if (!answer) break; // failed (logged): the names below, this round
      if (!answer.complete) {
        this.#sparse.add(folder.prefix);
        this.#log.info(
          { prefix: folder.prefix, secrets: members.length, pages: folder.maxPages },
          `ListSecrets of the path ${folder.prefix} would take more than ${folder.maxPages} page(s) for ${members.length} secret(s) (the path holds many other secrets): listing these secrets by name from now on`,
        );
      }
      for (const [name, group] of members) {
        const found = group.map((spec) => ({ spec, entry: answer.find(spec.id) }));
        // A secret not in a complete list of its path is described (too new for ListSecrets, or gone); in a list cut short, listed by name below.
        if (!answer.complete && found.some((f) => !f.entry)) continue;
        for (const { spec, entry } of found) {
          if (entry) {
            results.set(spec.name, listMetadata(spec, entry));
          } else {
            if (spec.id.startsWith('arn:')) this.#unlisted.add(spec.id); // as below: most likely another account's
            describeOne.push(spec);
          }
        }
        listed.delete(name);
      }
    }
    const prefixes = [...listed.keys()];
    const chunks: string[][] = [];
    for (let i = 0; i < prefixes.length; i += LIST_FILTER_VALUES) chunks.push(prefixes.slice(i, i + LIST_FILTER_VALUES));
    await pLimit(2).map(chunks, async (chunk) => {
      const chunkSpecs = chunk.flatMap((p) => listed.get(p) ?? []);
      const answer = this.#listRefused ? undefined : await this.#list(chunk, chunkSpecs.length, signal);
      if (!answer) {
        describeOne.push(...chunkSpecs);
        return;
      }
      for (const spec of chunkSpecs) {
        const entry = answer.find(spec.id);
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

  /** Paths ListSecrets read in more pages than their secrets were worth: listed by name for the rest of the run. */
  readonly #sparse = new Set<string>();

  /**
   * The paths worth listing whole: a folder (a name up to its last `/`) with
   * at least FOLDER_MIN_SECRETS of these names, not found sparse before. Listed
   * by name, they take one call per 10; listed by path, one per 100 entries
   * the path holds, mine or not. So a path is read for at most half the calls
   * its names would take (maxPages); a path holding more than that is sparse.
   */
  #folders(names: readonly string[]): { prefix: string; maxPages: number }[] {
    const count = new Map<string, number>();
    for (const name of names) {
      const slash = name.lastIndexOf('/');
      const folder = name.slice(0, slash + 1);
      if (slash > 0) count.set(folder, (count.get(folder) ?? 0) + 1);
    }
    const folders: { prefix: string; maxPages: number }[] = [];
    for (const [prefix, n] of count) {
      if (n >= FOLDER_MIN_SECRETS && !this.#sparse.has(prefix)) folders.push({ prefix, maxPages: Math.floor(Math.ceil(n / LIST_FILTER_VALUES) / 2) });
    }
    return folders;
  }

  /** The `name` filter value that lists this spec's secret, or undefined when ListSecrets cannot. */
  #listPrefix(spec: SecretSpec): string | undefined {
    if (this.#unlisted.has(spec.id)) return undefined;
    if (!spec.id.startsWith('arn:')) return spec.id;
    const m = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)$/.exec(spec.id);
    if (!m || m[1] !== this.#setup.region || (this.#listAccount !== undefined && m[2] !== this.#listAccount)) return undefined;
    // A full ARN ends in "-" and 6 random characters that are not part of the name; without them it is still a prefix.
    return (m[3] as string).replace(/-[A-Za-z0-9]{6}$/, '');
  }

  /**
   * The entries ListSecrets has for these name prefixes (complete: all pages
   * read, at most LIST_MAX_PAGES), or undefined when it failed (logged).
   */
  async #list(prefixes: readonly string[], secrets: number, signal?: AbortSignal, maxPages = LIST_MAX_PAGES): Promise<ListAnswer | undefined> {
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
      } while (nextToken && ++pages < maxPages);
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
    return { find: entryFinder(entries), complete: nextToken === undefined };
  }
}

/** What one ListSecrets (all its pages) answered: the entry for a configured id, and whether no page was left unread. */
interface ListAnswer {
  find(id: string): SecretListEntry | undefined;
  complete: boolean;
}

/**
 * The entry answering a configured id (matches(): a name, a full ARN, or a
 * partial ARN). Names and full ARNs are looked up in a map: a path listed
 * whole answers up to thousands of entries for as many secrets.
 */
function entryFinder(entries: readonly SecretListEntry[]): (id: string) => SecretListEntry | undefined {
  const exact = new Map<string, SecretListEntry>();
  for (const e of entries) {
    if (e.ARN !== undefined && !exact.has(e.ARN)) exact.set(e.ARN, e);
    if (e.Name !== undefined && !exact.has(e.Name)) exact.set(e.Name, e);
  }
  return (id) => exact.get(id) ?? (id.startsWith('arn:') ? entries.find((e) => matches(id, e)) : undefined);
}

/** ListSecrets: at most 10 values in one filter ("ListSecrets", Filter). */
export const LIST_FILTER_VALUES = 10;
/** Pages of 100 entries read for one chunk; a secret not found in a list cut short is described from then on. */
const LIST_MAX_PAGES = 3;
/**
 * Secrets of one round under one path (`team/app/` of `team/app/db`) from which
 * the path is listed whole instead of by name: 20 names are 2 calls by name,
 * and the path then gets 1 page (100 entries: mine must be at least a fifth).
 */
export const FOLDER_MIN_SECRETS = 20;

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
