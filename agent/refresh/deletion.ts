// A secret scheduled for deletion (DescribeSecret's DeletedDate) keeps serving
// its last value; DeletionReporter logs it once per deletion date (a warning
// saying what to do), once when the deletion is lifted, and exposes it as
// secrets_agent_secret_deletion_scheduled. The runner (runner.ts) calls note()
// with every metadata a check returns.
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { SecretMetadata, SecretSpec } from '../types.ts';

export class DeletionReporter {
  readonly #log: Logger;
  readonly #metrics: AgentMetrics;
  /** Secrets reported scheduled for deletion: local name -> DeletedDate (logged once per date). */
  readonly #deletion = new Map<string, string>();

  constructor(log: Logger, metrics: AgentMetrics) {
    this.#log = log;
    this.#metrics = metrics;
  }

  /** Report a scheduled deletion once per secret and date, and when it is lifted. */
  note(spec: SecretSpec, metadata: SecretMetadata): void {
    this.#metrics.secretDeletionScheduled(spec.name, metadata.deleted);
    const date = metadata.deleted ? (metadata.deletedDate?.toISOString() ?? 'unknown') : undefined;
    if (date === this.#deletion.get(spec.name)) return;
    if (date === undefined) {
      this.#deletion.delete(spec.name);
      this.#log.info({ secret: spec.name, secretId: spec.id }, 'secret is no longer scheduled for deletion');
      return;
    }
    this.#deletion.set(spec.name, date);
    this.#log.warn(
      { secret: spec.name, secretId: spec.id, deletedDate: date },
      `secret scheduled for deletion, found checking secret "${spec.name}" (${spec.id}) in Secrets Manager: DeletedDate ${date}, ` +
        'the agent keeps serving its last value but can read no new one; restore it (aws secretsmanager restore-secret --secret-id ID) ' +
        'before the recovery window ends, or point the config at its replacement',
    );
  }
}
