// A source of secret values. `aws` is Secrets Manager and SSM Parameter Store; `file` is a local YAML/JSON
// map for development. Both answer the same three questions: the values (first
// load, batched), one value, and the cheap "which version carries my stage now?".
import type { SecretMetadata, SecretSpec, SecretValue } from '../types.ts';
import type { SourceError } from '../errors.ts';

export type FetchResult = SecretValue | SourceError;

/** Every requested value from one read of a source that keeps all secrets in one document. */
export interface SourceSnapshot {
  /** Increases with every read of the document: a higher seq is a later version of it. */
  readonly seq: number;
  /** Local name -> value or SourceError, all from this one read. */
  readonly results: ReadonlyMap<string, FetchResult>;
}

export interface SecretSource {
  readonly kind: 'aws' | 'file';
  /**
   * First load: every spec's value, batched where the source can. Never throws for
   * one secret's failure: each local name maps to its value or its SourceError.
   */
  fetchAll(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, FetchResult>>;
  /** One value (the configured stage, or the pinned versionId). Throws SourceError. */
  fetch(spec: SecretSpec, signal?: AbortSignal): Promise<SecretValue>;
  /** Metadata only (DescribeSecret): no value, no KMS decrypt. Throws SourceError. */
  describe(spec: SecretSpec, signal?: AbortSignal): Promise<SecretMetadata>;
  /** Metadata of several specs in as few requests as the backend allows (no value, no decrypt). Never throws for one spec's failure: each local name maps to its metadata or its SourceError. */
  describeMany?(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<Map<string, SecretMetadata | SourceError>>;
  /** A short human description of the identity in use, logged once at start-up. */
  describeIdentity(): Record<string, string>;
  /**
   * Sources whose secrets all live in one document (the file source): every value
   * from one read, so a generation can hold one version of the document, never
   * some secrets from one edit and some from the next. Concurrent callers share
   * the read while the document is unchanged. Never throws for one secret.
   */
  readSnapshot?(specs: readonly SecretSpec[], signal?: AbortSignal): Promise<SourceSnapshot>;
  /** Called when the source's data may have changed (file source only). Returns an unsubscribe. */
  watch?(onChange: () => void): () => Promise<void>;
  close(): void;
}
