// agent/source/classify.ts, the one reading of AWS errors: for each error shape,
// the code and transient flag of the SourceError a source throws, and the
// `result` label of secrets_agent_aws_requests_total. One row states all three,
// so the two uses cannot drift apart.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SourceError } from '../../../agent/errors.ts';
import type { AwsResult } from '../../../agent/observe/metrics.ts';
import { classifyAwsError, errorCode, isTerminal, toSourceError } from '../../../agent/source/classify.ts';

const status = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });
const named = (name: string, extra: object = {}) => Object.assign(new Error('m'), { name }, extra);

// [what, error, SourceError code, transient, metric result]
const TABLE: [string, unknown, string, boolean, AwsResult][] = [
  ['access denied', named('AccessDeniedException', status(400)), 'AccessDeniedException', false, 'access_denied'],
  ['no such secret', named('ResourceNotFoundException', status(400)), 'ResourceNotFoundException', false, 'not_found'],
  ['KMS key not usable', named('DecryptionFailure', status(400)), 'DecryptionFailure', false, 'access_denied'],
  ['KMS key disabled', named('KMSDisabledException', status(400)), 'KMSDisabledException', false, 'client_error'],
  ['secret scheduled for deletion', named('InvalidRequestException', status(400)), 'InvalidRequestException', false, 'client_error'],
  ['bad parameter', named('InvalidParameterException', status(400)), 'InvalidParameterException', false, 'client_error'],
  ['bad web identity token', named('InvalidIdentityToken', status(400)), 'InvalidIdentityToken', false, 'access_denied'],
  ['expired STS token', named('ExpiredTokenException', status(400)), 'ExpiredTokenException', false, 'access_denied'],
  ['expired token (short name)', named('ExpiredToken', status(400)), 'ExpiredToken', true, 'access_denied'],
  ['clock skew', named('SignatureDoesNotMatch', status(403)), 'SignatureDoesNotMatch', true, 'access_denied'],
  ['HTTP 403 of unknown name', named('Whatever', status(403)), 'Whatever', true, 'access_denied'],
  ['throttled', named('ThrottlingException', status(400)), 'ThrottlingException', true, 'throttled'],
  ["Secrets Manager's rate limit", named('LimitExceededException', status(400)), 'LimitExceededException', true, 'throttled'],
  ['HTTP 429', named('Unknown', status(429)), 'Unknown', true, 'throttled'],
  ['throttling as the SDK marks it', named('Odd', { $retryable: { throttling: true } }), 'Odd', true, 'throttled'],
  ['HTTP 503', named('ServiceUnavailable', { $fault: 'server', ...status(503) }), 'ServiceUnavailable', true, 'server_error'],
  ['HTTP 500 of unknown name', named('Weird', status(500)), 'Weird', true, 'server_error'],
  ['request timeout', named('TimeoutError', { code: 'ETIMEDOUT' }), 'ETIMEDOUT', true, 'timeout'],
  ['connection timeout', named('TimeoutError'), 'TimeoutError', true, 'timeout'],
  ['aborted', named('AbortError'), 'AbortError', true, 'timeout'],
  ['reset, renamed TimeoutError by the Node handler', named('TimeoutError', { code: 'ECONNRESET' }), 'ECONNRESET', true, 'network_error'],
  ['refused', Object.assign(new Error('m'), { code: 'ECONNREFUSED' }), 'ECONNREFUSED', true, 'network_error'],
  ['DNS', Object.assign(new Error('m'), { code: 'ENOTFOUND' }), 'ENOTFOUND', true, 'network_error'],
  ['another system error, no response', Object.assign(new Error('m'), { code: 'EWHATEVER' }), 'EWHATEVER', true, 'network_error'],
  ['no credentials', named('CredentialsProviderError'), 'CredentialsProviderError', true, 'credentials_error'],
  ['a system code named as a name only', named('ECONNRESET'), 'ECONNRESET', true, 'client_error'],
  ['a bug', new TypeError('x is undefined'), 'TypeError', true, 'client_error'],
  ['a plain Error', new Error('m'), 'UnknownError', true, 'client_error'],
  ['not an object', 'boom', 'UnknownError', true, 'client_error'],
  ['null', null, 'UnknownError', true, 'client_error'],
];

void describe('the AWS error classifier (agent/source/classify.ts)', () => {
  for (const [what, error, code, transient, result] of TABLE) {
    void it(`when the error is ${what}: code ${code}, ${transient ? 'transient' : 'terminal'}, metric result ${result}`, () => {
      assert.equal(errorCode(error), code);
      assert.equal(isTerminal(code), !transient);
      const e = toSourceError(error, 'db', 'prod/db');
      assert.ok(e instanceof SourceError);
      assert.deepEqual({ code: e.code, transient: e.transient, secret: e.secret, secretId: e.secretId }, { code, transient, secret: 'db', secretId: 'prod/db' });
      assert.equal(classifyAwsError(error), result);
    });
  }

  void it('when the error is terminal with a known fix, the message names the code, the status and the fix', () => {
    const e = toSourceError(named('AccessDeniedException', { message: 'User is not authorized', ...status(400) }), 'db', 'prod/db');
    assert.equal(e.message, 'secret "db" (prod/db): AccessDeniedException (HTTP 400): User is not authorized — the role lacks secretsmanager:GetSecretValue/DescribeSecret on this secret (or kms:Decrypt on its key); see k8s-examples/iam/iam-policy.json');
  });

  void it('when the AWS message is long, the SourceError quotes at most 300 characters of it', () => {
    const e = toSourceError(named('Weird', { message: 'x'.repeat(1000) }), 'db', 'prod/db');
    assert.equal(e.message, `secret "db" (prod/db): Weird: ${'x'.repeat(300)}`);
  });

  void it('when the error is already a SourceError, it is passed through', () => {
    const original = new SourceError({ secret: 'db', secretId: 'prod/db', code: 'InvalidSecretPayload', transient: false, message: 'm' });
    assert.equal(toSourceError(original, 'other', 'other'), original);
  });
});
