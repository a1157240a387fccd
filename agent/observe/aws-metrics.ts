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
import type {
  HandlerExecutionContext,
  InitializeHandler,
  InitializeHandlerArguments,
  InitializeHandlerOutput,
  InitializeMiddleware,
  MetadataBearer,
  Pluggable,
} from '@smithy/types';
import type { AgentMetrics, AwsResult } from './metrics.ts';

export const AWS_METRICS_MIDDLEWARE = 'secretsAgentMetricsMiddleware';

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestThrottledException',
  'RequestThrottled',
  'TooManyRequestsException',
  'TooManyRequests',
  'RequestLimitExceeded',
  'LimitExceededException', // Secrets Manager's own rate error; the SDK retries it as throttling too
  'BandwidthLimitExceeded',
  'ProvisionedThroughputExceededException',
  'SlowDown',
  'PriorRequestNotComplete',
  'EC2ThrottledException',
  'TransactionInProgressException',
]);

const TIMEOUT = new Set(['TimeoutError', 'AbortError', 'RequestTimeout', 'RequestTimeoutException']);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'ABORT_ERR', 'UND_ERR_CONNECT_TIMEOUT']);

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EPROTO',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'CERT_HAS_EXPIRED',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
]);

const ACCESS_DENIED = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'UnauthorizedOperation',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'ExpiredTokenException',
  'ExpiredToken',
  'InvalidIdentityToken',
  'IDPRejectedClaim',
  'IDPCommunicationError',
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'DecryptionFailure', // the role cannot use the secret's KMS key (kms:Decrypt)
  'KMSAccessDeniedException',
]);

const NOT_FOUND = new Set(['ResourceNotFoundException', 'NotFoundException', 'NoSuchEntity', 'NoSuchKey']);

const CREDENTIALS = new Set(['CredentialsProviderError', 'CredentialsError', 'TokenProviderError']);

const SERVER = new Set(['InternalServiceError', 'InternalServiceErrorException', 'InternalFailure', 'InternalError', 'ServiceUnavailable', 'ServiceUnavailableException']);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown; attempts?: unknown };
  $retryable?: { throttling?: unknown };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/**
 * The result category of a failed AWS SDK call. Reads only the error's name,
 * code, fault and HTTP status, never its message (which can quote input).
 */
export function classifyAwsError(error: unknown): AwsResult {
  if (error === null || typeof error !== 'object') return 'client_error';
  const e = error as ErrorShape;
  const name = str(e.name);
  const code = str(e.code) || str(e.Code);
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;

  if (CREDENTIALS.has(name)) return 'credentials_error';
  if (THROTTLING.has(name) || THROTTLING.has(code) || e.$retryable?.throttling === true || status === 429) return 'throttled';
  // The Node handler renames ECONNRESET/EPIPE to TimeoutError: the code says what happened.
  if (NETWORK_CODES.has(code)) return 'network_error';
  if (TIMEOUT.has(name) || TIMEOUT.has(code) || TIMEOUT_CODES.has(code) || status === 408) return 'timeout';
  if (ACCESS_DENIED.has(name) || ACCESS_DENIED.has(code) || status === 401 || status === 403) return 'access_denied';
  if (NOT_FOUND.has(name) || NOT_FOUND.has(code) || status === 404) return 'not_found';
  if (SERVER.has(name) || SERVER.has(code) || e.$fault === 'server' || (status !== undefined && status >= 500)) return 'server_error';
  // No HTTP response at all and a system error code: the request never got an answer.
  if (status === undefined && /^E[A-Z]+$/.test(code)) return 'network_error';
  return 'client_error';
}

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
