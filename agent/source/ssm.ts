// SSM Parameter Store as the backend of `parameter` and `parameterPath` specs
// (the `aws` source routes them here: index.ts). The AWS facts below, with
// their sources: docs/aws.md ("SSM Parameter Store").
//
// Contract:
// - fetchAll / fetch: the values, decrypted (a SecureString's plaintext).
//   `parameter` specs: GetParameters, at most 10 names per request, each name
//   with its selector (`name:3` for a pinned version, `name:live` for a label).
//   A name GetParameters lists in InvalidParameters (no such parameter, version
//   or label) is a terminal ParameterNotFound SourceError naming it; a request
//   refused as a whole (e.g. one malformed name) is retried name by name so one
//   bad spec never fails the others. `parameterPath` specs: GetParametersByPath
//   (Recursive), page by page.
// - describe / describeMany: the cheap check, never decrypting (no KMS call):
//   the same requests with WithDecryption false, read for the version only. A
//   parameter's version is its Version number; a path's is a digest of the
//   (name, version) list under it, so a parameter added, removed or
//   overwritten under the path is a version move. Only a spec whose version
//   moved is then fetched with decryption (the runner's rule).
// - Quotas: GetParameter, GetParameters and GetParametersByPath share one
//   throughput quota (40 TPS per account and region by default), so requests
//   are few (10 names each) and at most 2 run at once.
//
// Matching answers to names: GetParameters answers with the parameter's name
// (and ARN), not always with the selector asked for (moto never sets
// `Selector`), so one request never carries two selectors of the same name.
import { createHash } from 'node:crypto';
import { GetParametersByPathCommand, GetParametersCommand, SSMClient, type Parameter } from '@aws-sdk/client-ssm';
import pLimit from 'p-limit';
import type { SourceError } from '../errors.ts';
import { kindOf, type ParameterInfo, type SecretMetadata, type SecretSpec, type SecretValue } from '../types.ts';
import { wrapAwsError, type AwsClientSetup } from './aws-client.ts';
import { errorCode, isTerminal } from './classify.ts';
import type { FetchResult } from './source.ts';

/** GetParameters takes 1 to 10 names. */
export const GET_PARAMETERS_MAX = 10;
/** GetParametersByPath answers at most 10 parameters per page. */
const PATH_PAGE_SIZE = 10;
const PARALLEL_REQUESTS = 2;

/** What GetParameters is asked for: the name (or ARN) with its selector. */
export function selectorOf(spec: SecretSpec): string {
  if (spec.versionId !== undefined) return `${spec.id}:${spec.versionId}`;
  if (spec.label !== undefined) return `${spec.id}:${spec.label}`;
  return spec.id;
}

/** Does this answer of GetParameters belong to `id` (a name, or a full ARN)? */
function answers(id: string, p: Parameter): boolean {
  if (id === p.Name || id === p.ARN) return true;
  if (!id.startsWith('arn:') || p.Name === undefined) return false;
  const name = p.Name.startsWith('/') ? p.Name : `/${p.Name}`;
  return id.endsWith(`:parameter${name}`);
}

/**
 * Selectors in requests of at most 10, no request carrying two selectors of one
 * parameter (see the header).
 */
export function chunkSelectors(specs: readonly SecretSpec[]): { selector: string; id: string }[][] {
  const chunks: { selector: string; id: string }[][] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    const selector = selectorOf(spec);
    if (seen.has(selector)) continue;
    seen.add(selector);
    const chunk = chunks.find((c) => c.length < GET_PARAMETERS_MAX && !c.some((x) => x.id === spec.id));
    if (chunk) chunk.push({ selector, id: spec.id });
    else chunks.push([{ selector, id: spec.id }]);
  }
  return chunks;
}

function parameterType(p: Parameter): ParameterInfo['type'] {
  return p.Type === 'StringList' || p.Type === 'SecureString' ? p.Type : 'String';
}

function toValue(p: Parameter, spec: SecretSpec): SecretValue {
  return {
    arn: p.ARN ?? '',
    name: p.Name ?? spec.id,
    versionId: String(p.Version ?? 0),
    versionStages: spec.label === undefined ? [] : [spec.label],
    ...(p.LastModifiedDate ? { createdDate: p.LastModifiedDate } : {}),
    secretString: p.Value ?? '',
    parameter: { type: parameterType(p), ...(p.LastModifiedDate ? { lastModifiedDate: p.LastModifiedDate } : {}) },
  };
}

/** '/prod/app' and '/prod/app/' both hold '/prod/app/db/password' as 'db/password'. */
function prefixOf(path: string): string {
  return path.endsWith('/') ? path : `${path}/`;
}

function relativeName(path: string, name: string): string {
  const prefix = prefixOf(path);
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** The version of a path: a digest of the sorted (name, version) list under it. */
export function pathVersion(parameters: readonly Parameter[]): string {
  const lines = parameters.map((p) => `${p.Name ?? ''}\0${String(p.Version ?? 0)}\n`).sort();
  return `path-${createHash('sha256').update(lines.join('')).digest('hex').slice(0, 32)}`;
}

/** Every parameter under a path as one value: an object keyed by relative name, versioned by pathVersion. */
function toPathValue(parameters: readonly Parameter[], spec: SecretSpec): SecretValue {
  const entries = new Map<string, SecretValue>();
  const sorted = [...parameters].sort((a, b) => ((a.Name ?? '') < (b.Name ?? '') ? -1 : 1));
  let newest: Date | undefined;
  for (const p of sorted) {
    const rel = relativeName(spec.id, p.Name ?? '');
    entries.set(rel, toValue(p, { name: spec.name, kind: 'parameter', id: p.Name ?? '' }));
    if (p.LastModifiedDate && (!newest || p.LastModifiedDate > newest)) newest = p.LastModifiedDate;
  }
  return {
    arn: '',
    name: spec.id,
    versionId: pathVersion(parameters),
    versionStages: [],
    ...(newest ? { createdDate: newest } : {}),
    secretString: JSON.stringify(Object.fromEntries([...entries].map(([rel, v]) => [rel, v.secretString ?? '']))),
    parameter: { entries, ...(newest ? { lastModifiedDate: newest } : {}) },
  };
}

function notFound(selector: string): Error {
  return Object.assign(new Error(`GetParameters lists ${JSON.stringify(selector)} under InvalidParameters`), { name: 'ParameterNotFound' });
}

function metadataOf(value: Pick<SecretValue, 'arn' | 'name' | 'versionId'>): SecretMetadata {
  return { arn: value.arn, name: value.name, versionIdForStage: value.versionId, rotationEnabled: false, deleted: false };
}

/** GetParameters' answer for one selector. */
type Answer = { readonly parameter: Parameter } | { readonly error: unknown };

export class SsmSource {
  readonly #client: SSMClient;

  constructor(setup: AwsClientSetup) {
    this.#client = new SSMClient(setup.config);
    setup.use(this.#client);
  }

  /**
   * One GetParameters request: selector -> parameter, or the error for it (not
   * found, or the request's own failure). A request refused as a whole with a
   * terminal error is retried selector by selector.
   */
  async #get(chunk: readonly { selector: string; id: string }[], decrypt: boolean, signal?: AbortSignal): Promise<Map<string, Answer>> {
    const out = new Map<string, Answer>();
    try {
      const res = await this.#client.send(
        new GetParametersCommand({ Names: chunk.map((c) => c.selector), WithDecryption: decrypt }),
        signal ? { abortSignal: signal } : {},
      );
      const invalid = new Set(res.InvalidParameters ?? []);
      for (const c of chunk) {
        const p = invalid.has(c.selector) ? undefined : res.Parameters?.find((x) => answers(c.id, x));
        out.set(c.selector, p ? { parameter: p } : { error: notFound(c.selector) });
      }
    } catch (err) {
      if (chunk.length > 1 && isTerminal(errorCode(err)) && !signal?.aborted) {
        const singles = await pLimit(PARALLEL_REQUESTS).map(chunk, (c) => this.#get([c], decrypt, signal));
        for (const m of singles) for (const [k, v] of m) out.set(k, v);
      } else {
        for (const c of chunk) out.set(c.selector, { error: err });
      }
    }
    return out;
  }

  /** Every parameter under a path, page by page. Throws what the SDK throws. */
  async #byPath(path: string, decrypt: boolean, signal?: AbortSignal): Promise<Parameter[]> {
    const all: Parameter[] = [];
    let nextToken: string | undefined;
    do {
      const res = await this.#client.send(
        new GetParametersByPathCommand({
          Path: path,
          Recursive: true,
          WithDecryption: decrypt,
          MaxResults: PATH_PAGE_SIZE,
          ...(nextToken ? { NextToken: nextToken } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
      all.push(...(res.Parameters ?? []));
      nextToken = res.NextToken ?? undefined;
    } while (nextToken);
    return all;
  }

  /** Each spec's value (decrypt) or, for a check, its version (no decrypt), by local name. */
  async #read(specs: readonly SecretSpec[], decrypt: boolean, signal?: AbortSignal): Promise<Map<string, FetchResult>> {
    const results = new Map<string, FetchResult>();
    const single = specs.filter((s) => kindOf(s) === 'parameter');
    const paths = specs.filter((s) => kindOf(s) === 'parameterPath');
    const limit = pLimit(PARALLEL_REQUESTS);
    await Promise.all([
      ...chunkSelectors(single).map((chunk) =>
        limit(async () => {
          const got = await this.#get(chunk, decrypt, signal);
          for (const spec of single) {
            const p = got.get(selectorOf(spec));
            if (p === undefined) continue;
            results.set(spec.name, 'parameter' in p ? toValue(p.parameter, spec) : this.#wrap(p.error, spec));
          }
        }),
      ),
      ...[...new Set(paths.map((s) => s.id))].map((path) =>
        limit(async () => {
          let value: Parameter[] | { error: unknown };
          try {
            value = await this.#byPath(path, decrypt, signal);
          } catch (err) {
            value = { error: err };
          }
          for (const spec of paths) {
            if (spec.id !== path) continue;
            results.set(spec.name, Array.isArray(value) ? toPathValue(value, spec) : this.#wrap(value.error, spec));
          }
        }),
      ),
    ]);
    return results;
  }

  fetchAll(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, FetchResult>> {
    return this.#read(specs, true, signal);
  }

  async fetch(spec: SecretSpec, signal?: AbortSignal): Promise<SecretValue> {
    const r = (await this.#read([spec], true, signal)).get(spec.name);
    if (r === undefined) throw this.#wrap(notFound(selectorOf(spec)), spec);
    if (r instanceof Error) throw r;
    return r;
  }

  async describe(spec: SecretSpec, signal?: AbortSignal): Promise<SecretMetadata> {
    const r = (await this.describeMany([spec], signal)).get(spec.name);
    if (r === undefined) throw this.#wrap(notFound(selectorOf(spec)), spec);
    if (r instanceof Error) throw r;
    return r;
  }

  /** Versions only: WithDecryption false, 10 names per GetParameters, a path page by page. */
  async describeMany(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, SecretMetadata | SourceError>> {
    const out = new Map<string, SecretMetadata | SourceError>();
    for (const [name, r] of await this.#read(specs, false, signal)) out.set(name, r instanceof Error ? r : metadataOf(r));
    return out;
  }

  #wrap(err: unknown, spec: SecretSpec): SourceError {
    return wrapAwsError(err, spec);
  }

  close(): void {
    this.#client.destroy();
  }
}
