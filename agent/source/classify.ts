// The one reading of a failed AWS SDK call, for everything that acts on it.
//
// Contract:
// - `errorCode(err)`: the code the agent reports (SourceError.code, log `code`):
//   the error's `code`, else its `name` (unless plain "Error"), else "UnknownError".
// - `isTerminal(code)`: no amount of retrying fixes it quickly, an operator has to
//   act; every other code is transient (SourceError.transient). The SDK has
//   already made up to 3 attempts of a transient error (docs/aws.md, "Retries");
//   our own cycle-level backoff (p-retry in the scheduler) layers on top.
// - `classifyAwsError(err)`: the `result` label of secrets_agent_aws_requests_total
//   (source/aws-metrics.ts), one of AWS_RESULTS.
// - `toSourceError(err, …)`: the SourceError a source throws, with a hint for the
//   codes an operator can fix (Secrets Manager's or SSM Parameter Store's).
// All of them read only the error's name, code, fault and HTTP status, never its
// message (which can quote input); toSourceError quotes the message, capped.
//
// Every code the agent knows is in one table, KNOWN, with its metric category
// and whether it is terminal.
import { SourceError } from '../errors.ts';
import type { AwsResult } from '../observe/metrics.ts';

interface Known {
  /** The metric category; 'client_error' for codes only listed for `terminal`. */
  readonly result: AwsResult;
  readonly terminal?: true;
  /** Matched only as the error's `name` (credential providers) or only as its `code` (Node system errors). */
  readonly only?: 'name' | 'code';
}

const T = { terminal: true } as const;
const SYSTEM = { only: 'code' } as const;

const KNOWN = new Map<string, Known>(
  Object.entries({
    // Credential providers (by name): the SDK's CredentialsProviderError, our CredentialsError (errors.ts).
    CredentialsProviderError: { result: 'credentials_error', only: 'name' },
    CredentialsError: { result: 'credentials_error', only: 'name' },
    TokenProviderError: { result: 'credentials_error', only: 'name' },

    // Throttling: the SDK's THROTTLING_ERROR_CODES (docs/aws.md, "Retries"), plus the HTTP 429 family.
    ThrottlingException: { result: 'throttled' },
    Throttling: { result: 'throttled' },
    ThrottledException: { result: 'throttled' },
    RequestThrottledException: { result: 'throttled' },
    RequestThrottled: { result: 'throttled' },
    TooManyRequestsException: { result: 'throttled' },
    TooManyRequests: { result: 'throttled' },
    RequestLimitExceeded: { result: 'throttled' },
    LimitExceededException: { result: 'throttled' }, // Secrets Manager's own rate error; the SDK retries it as throttling too
    BandwidthLimitExceeded: { result: 'throttled' },
    ProvisionedThroughputExceededException: { result: 'throttled' },
    SlowDown: { result: 'throttled' },
    PriorRequestNotComplete: { result: 'throttled' },
    EC2ThrottledException: { result: 'throttled' },
    TransactionInProgressException: { result: 'throttled' },

    // The request never got an answer (Node system error codes).
    ECONNREFUSED: { result: 'network_error', ...SYSTEM },
    ECONNRESET: { result: 'network_error', ...SYSTEM },
    ECONNABORTED: { result: 'network_error', ...SYSTEM },
    EPIPE: { result: 'network_error', ...SYSTEM },
    ENOTFOUND: { result: 'network_error', ...SYSTEM },
    EAI_AGAIN: { result: 'network_error', ...SYSTEM },
    EHOSTUNREACH: { result: 'network_error', ...SYSTEM },
    EHOSTDOWN: { result: 'network_error', ...SYSTEM },
    ENETUNREACH: { result: 'network_error', ...SYSTEM },
    ENETDOWN: { result: 'network_error', ...SYSTEM },
    EPROTO: { result: 'network_error', ...SYSTEM },
    ERR_SOCKET_CONNECTION_TIMEOUT: { result: 'network_error', ...SYSTEM },
    ERR_SSL_WRONG_VERSION_NUMBER: { result: 'network_error', ...SYSTEM },
    CERT_HAS_EXPIRED: { result: 'network_error', ...SYSTEM },
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: { result: 'network_error', ...SYSTEM },
    DEPTH_ZERO_SELF_SIGNED_CERT: { result: 'network_error', ...SYSTEM },

    // Timeouts: the handler's TimeoutError (connection/request deadlines, docs/aws.md "Timeouts"), an abortSignal.
    TimeoutError: { result: 'timeout' },
    AbortError: { result: 'timeout' },
    RequestTimeout: { result: 'timeout' },
    RequestTimeoutException: { result: 'timeout' },
    ETIMEDOUT: { result: 'timeout', ...SYSTEM },
    ESOCKETTIMEDOUT: { result: 'timeout', ...SYSTEM },
    ABORT_ERR: { result: 'timeout', ...SYSTEM },
    UND_ERR_CONNECT_TIMEOUT: { result: 'timeout', ...SYSTEM },

    // The role may not do this, or its credentials are not accepted.
    AccessDeniedException: { result: 'access_denied', ...T },
    AccessDenied: { result: 'access_denied', ...T },
    UnauthorizedOperation: { result: 'access_denied' },
    UnrecognizedClientException: { result: 'access_denied', ...T },
    InvalidClientTokenId: { result: 'access_denied', ...T },
    ExpiredTokenException: { result: 'access_denied', ...T },
    ExpiredToken: { result: 'access_denied' },
    InvalidIdentityToken: { result: 'access_denied', ...T },
    IDPRejectedClaim: { result: 'access_denied' },
    IDPCommunicationError: { result: 'access_denied' },
    InvalidSignatureException: { result: 'access_denied' },
    SignatureDoesNotMatch: { result: 'access_denied' },
    IncompleteSignature: { result: 'access_denied' },
    MissingAuthenticationToken: { result: 'access_denied' },
    DecryptionFailure: { result: 'access_denied', ...T }, // the role cannot use the secret's KMS key (kms:Decrypt)
    KMSAccessDeniedException: { result: 'access_denied', ...T },

    ResourceNotFoundException: { result: 'not_found', ...T },
    // SSM: no such parameter (also our name for one GetParameters lists under InvalidParameters: ssm.ts), version or label.
    ParameterNotFound: { result: 'not_found', ...T },
    ParameterVersionNotFound: { result: 'not_found', ...T },
    NotFoundException: { result: 'not_found' },
    NoSuchEntity: { result: 'not_found' },
    NoSuchKey: { result: 'not_found' },

    InternalServiceError: { result: 'server_error' },
    InternalServiceErrorException: { result: 'server_error' },
    InternalServerError: { result: 'server_error' }, // SSM's 500
    InternalFailure: { result: 'server_error' },
    InternalError: { result: 'server_error' },
    ServiceUnavailable: { result: 'server_error' },
    ServiceUnavailableException: { result: 'server_error' },

    // The request or the secret's key is not usable as it is.
    InvalidParameterException: { result: 'client_error', ...T },
    InvalidRequestException: { result: 'client_error', ...T },
    ValidationException: { result: 'client_error', ...T },
    KMSDisabledException: { result: 'client_error', ...T },
    KMSInvalidStateException: { result: 'client_error', ...T },
    KMSNotFoundException: { result: 'client_error', ...T },
    InvalidKeyId: { result: 'client_error', ...T }, // SSM: the SecureString's KMS key is disabled, deleted or not usable
    InvalidNextToken: { result: 'client_error' }, // SSM: a stale GetParametersByPath page token; the next check starts over
  } satisfies Record<string, Known>),
);

/**
 * Which category wins when the name, the code and the HTTP status disagree, and
 * what the status alone says. (The Node handler renames ECONNRESET/EPIPE to
 * TimeoutError: the code says what happened, so network comes before timeout.)
 */
const PRECEDENCE: readonly { result: AwsResult; status?: (status: number | undefined, e: ErrorShape) => boolean }[] = [
  { result: 'credentials_error' },
  { result: 'throttled', status: (s, e) => s === 429 || e.$retryable?.throttling === true },
  { result: 'network_error' },
  { result: 'timeout', status: (s) => s === 408 },
  { result: 'access_denied', status: (s) => s === 401 || s === 403 },
  { result: 'not_found', status: (s) => s === 404 },
  { result: 'server_error', status: (s, e) => e.$fault === 'server' || (s !== undefined && s >= 500) },
];

const HINTS: Record<string, string> = {
  AccessDeniedException:
    'the role lacks secretsmanager:GetSecretValue/DescribeSecret on this secret (or kms:Decrypt on its key); see k8s-examples/iam/iam-policy.json',
  ResourceNotFoundException: 'no such secret (or no version with this stage/versionId) in this account and region; check the id and source.region',
  DecryptionFailure: 'the secret\'s KMS key cannot be used; grant kms:Decrypt on the key to the role',
  InvalidRequestException: 'the request is not valid for this secret (is it scheduled for deletion?)',
  KMSAccessDeniedException: 'grant kms:Decrypt on the secret\'s KMS key to the role',
};

/** Where the SSM hint differs from the Secrets Manager one. */
const SSM_HINTS: Record<string, string> = {
  AccessDeniedException:
    'the role lacks ssm:GetParameters/ssm:GetParametersByPath on this parameter (or kms:Decrypt on a SecureString\'s customer key); see k8s-examples/iam/iam-policy.json',
  ParameterNotFound: 'no such parameter (or no such version or label of it) in this account and region; check the name and source.region',
  ParameterVersionNotFound: 'the parameter has no such version (a version older than the last 100 is gone)',
  InvalidKeyId: 'the SecureString\'s KMS key is disabled or deleted, or not one the role may use',
};

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: { throttling?: unknown };
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export function errorCode(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as ErrorShape;
    if (typeof e.code === 'string' && e.code) return e.code;
    if (typeof e.name === 'string' && e.name && e.name !== 'Error') return e.name;
  }
  return 'UnknownError';
}

export function isTerminal(code: string): boolean {
  return KNOWN.get(code)?.terminal === true;
}

/** The result category of a failed AWS SDK call (the metric label). */
export function classifyAwsError(error: unknown): AwsResult {
  if (error === null || typeof error !== 'object') return 'client_error';
  const e = error as ErrorShape;
  const name = str(e.name);
  const code = str(e.code) || str(e.Code);
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const byName = KNOWN.get(name);
  const byCode = KNOWN.get(code);
  const named = byName?.only === 'code' ? undefined : byName?.result;
  const coded = byCode?.only === 'name' ? undefined : byCode?.result;
  for (const p of PRECEDENCE) {
    if (named === p.result || coded === p.result || p.status?.(status, e)) return p.result;
  }
  // No HTTP response at all and a system error code: the request never got an answer.
  if (status === undefined && /^E[A-Z]+$/.test(code)) return 'network_error';
  return 'client_error';
}

/** A safe, short message: the AWS message is metadata-only, but cap its length anyway. */
function safeMessage(err: unknown): string {
  if (err && typeof err === 'object' && typeof (err as ErrorShape).message === 'string') {
    return ((err as ErrorShape).message as string).slice(0, 300);
  }
  return String(err).slice(0, 300);
}

/** `service`: which backend the call went to (the hints name its permissions). */
export function toSourceError(err: unknown, secret: string, secretId: string, service: 'secretsmanager' | 'ssm' = 'secretsmanager'): SourceError {
  if (err instanceof SourceError) return err;
  const code = errorCode(err);
  const hint = (service === 'ssm' ? SSM_HINTS[code] : undefined) ?? HINTS[code];
  const status = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  const message = `${code}${status ? ` (HTTP ${status})` : ''}: ${safeMessage(err)}${hint ? ` — ${hint}` : ''}`;
  return new SourceError({ secret, secretId, code, transient: !isTerminal(code), message }, { cause: err });
}
