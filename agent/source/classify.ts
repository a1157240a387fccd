// Which AWS errors are worth retrying. The SDK already retries transient errors
// 3 times with backoff; what reaches us has exhausted those, and our own
// cycle-level backoff (p-retry in the scheduler) layers on top.
import { SourceError } from '../errors.ts';

/** Codes that no amount of retrying fixes quickly: an operator has to act. */
const TERMINAL = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'ResourceNotFoundException',
  'DecryptionFailure',
  'InvalidParameterException',
  'InvalidRequestException',
  'ValidationException',
  'UnrecognizedClientException',
  'InvalidIdentityToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'KMSAccessDeniedException',
  'KMSDisabledException',
  'KMSInvalidStateException',
  'KMSNotFoundException',
]);

const HINTS: Record<string, string> = {
  AccessDeniedException:
    'the role lacks secretsmanager:GetSecretValue/DescribeSecret on this secret (or kms:Decrypt on its key); see k8s-examples/iam/iam-policy.json',
  ResourceNotFoundException: 'no such secret (or no version with this stage/versionId) in this account and region; check the id and source.region',
  DecryptionFailure: 'the secret\'s KMS key cannot be used; grant kms:Decrypt on the key to the role',
  InvalidRequestException: 'the request is not valid for this secret (is it scheduled for deletion?)',
  KMSAccessDeniedException: 'grant kms:Decrypt on the secret\'s KMS key to the role',
};

interface AwsLikeError {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

export function errorCode(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as AwsLikeError;
    if (typeof e.code === 'string' && e.code) return e.code;
    if (typeof e.name === 'string' && e.name && e.name !== 'Error') return e.name;
  }
  return 'UnknownError';
}

export function isTerminal(code: string): boolean {
  return TERMINAL.has(code);
}

/** A safe, short message: the AWS message is metadata-only, but cap its length anyway. */
function safeMessage(err: unknown): string {
  if (err && typeof err === 'object' && typeof (err as AwsLikeError).message === 'string') {
    return ((err as AwsLikeError).message as string).slice(0, 300);
  }
  return String(err).slice(0, 300);
}

export function toSourceError(err: unknown, secret: string, secretId: string): SourceError {
  if (err instanceof SourceError) return err;
  const code = errorCode(err);
  const hint = HINTS[code];
  const status = (err as AwsLikeError | undefined)?.$metadata?.httpStatusCode;
  const message = `${code}${status ? ` (HTTP ${status})` : ''}: ${safeMessage(err)}${hint ? ` — ${hint}` : ''}`;
  return new SourceError({ secret, secretId, code, transient: !isTerminal(code), message }, { cause: err });
}
