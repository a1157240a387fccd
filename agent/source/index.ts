// The secret source the config names: AWS Secrets Manager or a local file.
// The contract every source keeps is SecretSource (source/source.ts: what each
// method returns and how it throws); createSource throws SetupError when the
// source cannot work where the agent runs (no AWS region).
import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { AgentConfig } from '../types.ts';
import { SetupError } from '../errors.ts';
import { AwsSource, resolveRegion } from './aws.ts';
import { FileSource } from './file.ts';
import type { SecretSource } from './source.ts';

export type { SecretSource, FetchResult } from './source.ts';

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
  return new AwsSource(config.secrets, {
    ...(config.source.region ? { region: config.source.region } : {}),
    ...(config.source.assumeRoleArn ? { assumeRoleArn: config.source.assumeRoleArn } : {}),
    log,
    plugins,
    ...(metrics ? { onCredentials: (c) => { if (c.expiration) metrics.credentialsExpire(c.expiration); } } : {}),
  });
}
