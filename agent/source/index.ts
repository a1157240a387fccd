import type { Logger } from '../observe/log.ts';
import type { AgentMetrics } from '../observe/metrics.ts';
import type { AgentConfig } from '../types.ts';
import { AwsSource } from './aws.ts';
import { FileSource } from './file.ts';
import type { SecretSource } from './source.ts';

export type { SecretSource, FetchResult } from './source.ts';

/** The configured source; AWS clients carry the metrics plugin when metrics are given. */
export async function createSource(config: AgentConfig, log: Logger, metrics?: AgentMetrics): Promise<SecretSource> {
  if (config.source.type === 'file') return new FileSource(config.source.path, log);
  const plugins = [];
  if (metrics) {
    const { awsMetricsPlugin } = await import('../observe/aws-metrics.ts');
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
