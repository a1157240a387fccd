// A source that keeps every secret in one document (the file source,
// SecretSource.readSnapshot) is read as a whole: a change found in one read is
// accepted for every secret from that same read, so a generation reflects one
// version of the document. The runner (runner.ts) reads; SnapshotApplier
// decides which values of a read are accepted (never one from a read older
// than the latest accepted, never over a pinned or fetch-once value) and
// counts and logs them; snapshotMetadata is what a check reports for one secret
// of a read.
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { Pipeline } from '../pipeline.ts';
import type { SourceSnapshot } from '../source/source.ts';
import type { SecretMetadata, SecretSpec, SecretValue } from '../types.ts';

export class SnapshotApplier {
  readonly #log: Logger;
  readonly #metrics: AgentMetrics;
  /** seq of the latest source snapshot accepted. */
  #snapshotSeq = 0;

  constructor(log: Logger, metrics: AgentMetrics) {
    this.#log = log;
    this.#metrics = metrics;
  }

  /**
   * Accept every value of one snapshot that differs from the one held. A snapshot
   * older than the latest accepted one is ignored (unless `force`: a pipeline
   * being filled for the first time). Returns the names whose value changed.
   */
  apply(pipeline: Pipeline, snap: SourceSnapshot, force: boolean): string[] {
    if (!force && snap.seq < this.#snapshotSeq) return [];
    this.#snapshotSeq = Math.max(this.#snapshotSeq, snap.seq);
    const changed: string[] = [];
    for (const spec of pipeline.config.secrets) {
      const value = snap.results.get(spec.name);
      if (value === undefined || value instanceof Error) continue;
      const current = pipeline.values.get(spec.name);
      // A pinned version or a `refreshInterval: never` secret keeps the value it was first given.
      if (current && (spec.versionId || spec.fetchOnce)) continue;
      if (!pipeline.accept(spec.name, value)) continue;
      this.#metrics.secretFetched(spec.name, 'success');
      if (current) this.#log.info({ secret: spec.name, from: current.versionId, to: value.versionId }, 'new secret version');
      changed.push(spec.name);
    }
    return changed;
  }
}

/** The metadata a check reports for a secret of a snapshot (`mine`: its value, undefined when the read has none). */
export function snapshotMetadata(spec: SecretSpec, mine: SecretValue | undefined): SecretMetadata {
  return {
    arn: mine?.arn ?? '',
    name: mine?.name ?? spec.id,
    ...(mine ? { versionIdForStage: mine.versionId } : {}),
    rotationEnabled: false,
    deleted: false,
  };
}
