// The vocabulary of the agent's metrics (the contract docs/metrics.md
// documents and test/unit/observe/observe.test.ts checks): every metric's name
// and type, the fixed words its `result` labels take, the histogram buckets,
// and what the agent declares. No prom-client here: observe/metrics.ts builds
// the registry from these.
/** Outcome of a secret check (DescribeSecret), fetch (GetSecretValue), file render or notification. */
export type Outcome = 'success' | 'error';

/**
 * Outcome of one write of the output volume: `success` (a new generation was
 * swapped in), `unchanged` (every byte, mode and owner equal: nothing written),
 * `error` (previous generation kept).
 */
export type WriteResult = 'success' | 'unchanged' | 'error';

/** Category of one AWS SDK call (after the SDK's own retries). */
export type AwsResult =
  | 'success'
  | 'throttled'
  | 'server_error'
  | 'timeout'
  | 'network_error'
  | 'access_denied'
  | 'not_found'
  | 'credentials_error'
  | 'client_error';

export const OUTCOMES: readonly Outcome[] = ['success', 'error'];
export const WRITE_RESULTS: readonly WriteResult[] = ['success', 'unchanged', 'error'];
export const AWS_RESULTS: readonly AwsResult[] = [
  'success',
  'throttled',
  'server_error',
  'timeout',
  'network_error',
  'access_denied',
  'not_found',
  'credentials_error',
  'client_error',
];

/** Buckets for AWS call durations: 5 ms (a warm keep-alive call in-region) .. 30 s (retries with backoff). */
export const AWS_DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The `secrets_agent_*` metric names and their Prometheus types (the contract documented in docs/metrics.md). */
export const METRIC_TYPES = {
  secrets_agent_secret_checks_total: 'counter',
  secrets_agent_secret_fetches_total: 'counter',
  secrets_agent_secret_last_success_timestamp_seconds: 'gauge',
  secrets_agent_secret_version_changes_total: 'counter',
  secrets_agent_secret_version_created_timestamp_seconds: 'gauge',
  secrets_agent_secret_refresh_interval_seconds: 'gauge',
  secrets_agent_secret_deletion_scheduled: 'gauge',
  secrets_agent_failover_total: 'counter',
  secrets_agent_file_renders_total: 'counter',
  secrets_agent_files_writes_total: 'counter',
  secrets_agent_files_generation_timestamp_seconds: 'gauge',
  secrets_agent_files_target_generation_timestamp_seconds: 'gauge',
  secrets_agent_notify_total: 'counter',
  secrets_agent_notify_failing: 'gauge',
  secrets_agent_aws_requests_total: 'counter',
  secrets_agent_aws_request_duration_seconds: 'histogram',
  secrets_agent_aws_retries_total: 'counter',
  secrets_agent_credentials_expiration_timestamp_seconds: 'gauge',
  secrets_agent_config_reloads_total: 'counter',
  secrets_agent_volume_repairs_total: 'counter',
  secrets_agent_volume_lock_lost_total: 'counter',
  secrets_agent_ready: 'gauge',
  secrets_agent_build_info: 'gauge',
} as const;

export type MetricName = keyof typeof METRIC_TYPES;

export interface AgentMetricsOptions {
  /** The agent's version, exposed as `secrets_agent_build_info{version}`. */
  version: string;
  /**
   * Also expose prom-client's default process metrics (`process_*`, `nodejs_*`).
   * @default true
   */
  processMetrics?: boolean;
}

/** What `declareConfig` needs from the configuration (structurally a subset of AgentConfig). */
export interface DeclaredConfig {
  readonly refresh: { readonly intervalMs: number };
  readonly secrets: readonly { readonly name: string; readonly versionId?: string; readonly refreshIntervalMs?: number; readonly fetchOnce?: true }[];
  readonly files: readonly { readonly path: string }[];
  readonly notify: readonly { readonly name: string }[];
  /** `targets:` (subdirectories of outputDir written as roots of their own); absent or empty: none. */
  readonly targets?: readonly string[];
}

/** One secret to declare: its local name and its check interval in ms (0 = pinned `versionId`, never refreshed). */
export interface DeclaredSecret {
  readonly name: string;
  readonly intervalMs: number;
}

/** prom-client default metrics the agent does not expose (see the constructor). */
export const DROPPED_DEFAULT_METRICS: readonly string[] = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
