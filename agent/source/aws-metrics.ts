// Counts and times every AWS SDK call, for any smithy client: Secrets Manager
// and the STS clients the credential providers create.
//
// Where the middleware sits, and why: in the `initialize` step with `high`
// priority, the outermost layer of the stack. It therefore measures each
// `client.send()` once, from the caller's point of view: the SDK's retries and
// their backoff, credential resolution (STS / Pod Identity, which happens while
// signing) and signing are all inside the measured time, and the result is the
// final outcome the agent acted on. Per-attempt detail is not lost: the number
// of retries the SDK made is read from `$metadata.attempts` (set by the retry
// middleware on both outputs and errors) and counted in
// `secrets_agent_aws_retries_total{operation}`. A per-attempt middleware
// (`finalizeRequest` after `retryMiddleware`) would see throttling responses
// the SDK later recovered from, but would also need a second layer to know what
// the caller finally got; one layer + the attempts count gives both.
//
// Using it with the nested STS clients: the credential providers accept
// `clientPlugins` and apply them to the STS client they create:
//   fromNodeProviderChain({ clientPlugins: [plugin] })  // passed on to fromTokenFile -> fromWebToken ->
//                                                        // getDefaultRoleAssumerWithWebIdentity(…, clientPlugins)
//   fromTokenFile({ clientPlugins: [plugin] })          // IRSA only
//   fromTemporaryCredentials({ clientPlugins: [plugin], … })  // assumeRoleArn chaining
// fromTemporaryCredentials calls `middlewareStack.use(plugin)` on its cached STS
// client at every credential refresh, so the middleware is added with
// `override: true`: adding it again replaces it instead of throwing
// "Duplicate middleware name".
//
// The result label of a failed call is source/classify.ts's classifyAwsError: the
// one reading of AWS errors, shared with the SourceError codes and transient flags.
import type {
  HandlerExecutionContext,
  InitializeHandler,
  InitializeHandlerArguments,
  InitializeHandlerOutput,
  InitializeMiddleware,
  MetadataBearer,
  Pluggable,
} from '@smithy/types';
import { classifyAwsError } from './classify.ts';
import type { AgentMetrics } from '../observe/metrics.ts';

export const AWS_METRICS_MIDDLEWARE = 'secretsAgentMetricsMiddleware';

function operationOf(context: HandlerExecutionContext): string {
  const command = typeof context.commandName === 'string' ? context.commandName : '';
  return command.endsWith('Command') ? command.slice(0, -'Command'.length) : command || 'other';
}

function attemptsOf(value: unknown): number {
  const meta = value && typeof value === 'object' ? (value as MetadataBearer).$metadata : undefined;
  return typeof meta?.attempts === 'number' ? meta.attempts : 1;
}

function metricsMiddleware(metrics: AgentMetrics): InitializeMiddleware<object, MetadataBearer> {
  return (next: InitializeHandler<object, MetadataBearer>, context: HandlerExecutionContext) =>
    async (args: InitializeHandlerArguments<object>): Promise<InitializeHandlerOutput<MetadataBearer>> => {
      const operation = operationOf(context);
      const start = process.hrtime.bigint();
      const elapsed = (): number => Number(process.hrtime.bigint() - start) / 1e9;
      let result: InitializeHandlerOutput<MetadataBearer>;
      try {
        result = await next(args);
      } catch (error) {
        metrics.awsRequest(operation, classifyAwsError(error), elapsed(), attemptsOf(error));
        throw error;
      }
      metrics.awsRequest(operation, 'success', elapsed(), attemptsOf(result.output));
      return result;
    };
}

/**
 * A client plugin that records every call of the client it is added to in
 * `metrics` (operation, result category, duration, retries). Add it with
 * `client.middlewareStack.use(plugin)` and pass it to credential providers as
 * `clientPlugins: [plugin]` (see the comment at the top of this file).
 * One plugin object can be shared by several clients.
 */
// The plugin has to fit any client (Secrets Manager, STS), as @smithy/types' own `clientPlugins` does.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function awsMetricsPlugin(metrics: AgentMetrics): Pluggable<any, any> {
  return {
    applyToStack(stack) {
      stack.add(metricsMiddleware(metrics), {
        step: 'initialize',
        priority: 'high',
        name: AWS_METRICS_MIDDLEWARE,
        override: true,
        tags: ['METRICS'],
      });
    },
  };
}
