// What every AWS client of the agent shares: one region, one request handler
// with deadlines, one credential chain (IRSA, EKS Pod Identity, the default
// chain; optionally an assumed role on top) with its own overall deadline, and
// the client plugins (metrics). Secrets Manager (aws.ts) and SSM Parameter Store
// (ssm.ts) are built from one AwsClientSetup, so both clients sign as the same
// identity, time out the same way and are counted the same way. The AWS facts
// below, with their sources: docs/aws.md.
//
// Deadlines: the SDK sets none (NodeHttpHandler has no connection or request
// timeout, and a hanging credential endpoint is not aborted by abortSignal), so
// every request gets connection/request timeouts with throwOnRequestTimeout,
// and credential resolution gets its own overall deadline.
//
// Identity: chosen once from the environment; the providers, their deadline,
// the cache shared across regions and the stale-credentials reports live in
// credentials.ts (createAwsClientSetup throws its SetupError when the pod has
// no identity of its own). Egress proxy: the handler's Agents get the
// `proxyEnv` of proxy.ts. docs/network.md.
//
// Errors: wrapAwsError turns a failed call about one spec into its SourceError,
// credential failures keeping their code, with a hint when the network path
// (an untrusted certificate, an egress proxy) is the likely cause.
import { fromContainerMetadata, fromEnv, fromIni, fromNodeProviderChain, fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, Pluggable } from '@smithy/types';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { CredentialsError, SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import { kindOf, type SecretSpec } from '../types.ts';
import { toSourceError } from './classify.ts';
import {
  credentialsError,
  identityKind,
  podIdentityEnv,
  podIdentityProvider,
  sharedAcrossRegions,
  staleReporter,
  webIdentityProvider,
  withDeadline,
  type IdentityKind,
} from './credentials.ts';
import { describeProxy, egressProxyEnv, proxyUrls, redactProxy } from './proxy.ts';

export interface AwsClientOptions {
  region?: string;
  assumeRoleArn?: string;
  /** Client plugins (e.g. metrics) added to every service client and to the STS clients used for credentials. */
  // A plugin must fit the service clients and the STS clients, so it is typed for any client.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  plugins?: readonly Pluggable<any, any>[];
  /** Called with every credential set resolved (for the expiration metric). */
  onCredentials?: (creds: AwsCredentialIdentity) => void;
  /** Called when credential resolution fails or times out. */
  onCredentialsError?: (err: CredentialsError) => void;
  /** @default 3000 */
  connectionTimeoutMs?: number;
  /** @default 10000 */
  requestTimeoutMs?: number;
  /** Overall deadline for resolving credentials (STS / Pod Identity). @default 15000 */
  credentialsTimeoutMs?: number;
  /** With no identity of the pod's own, use the default chain, instance metadata (the node's role) included. */
  allowNodeRole?: boolean;
  /** For the one-line reports of a refresh that failed while the current credentials were still valid. */
  log?: Logger;
}

/** The shared configuration of a service client: pass `config` to its constructor, then `use(client)`. */
export interface AwsClientSetup {
  readonly region: string;
  readonly assumeRoleArn: string | undefined;
  /** Whose identity signs the requests (identityKind). */
  readonly identity: IdentityKind;
  readonly config: {
    readonly region: string;
    readonly requestHandler: NodeHttpHandler;
    readonly maxAttempts: number;
    readonly credentials: AwsCredentialIdentityProvider;
  };
  /** Add the plugins (metrics) to a service client built from `config`. */
  use(client: { middlewareStack: { use(p: never): void } }): void;
  /**
   * The same setup for another region (source.failoverRegion): same request
   * handler, plugins and identity, whose cached credentials it shares (no STS
   * call while they are valid); a refresh it triggers goes to STS in `region`.
   */
  forRegion(region: string): AwsClientSetup;
  /**
   * The same setup whose service clients give up sooner (the primary region's,
   * when a failover region waits: FAILOVER_DEADLINES). Credentials keep theirs.
   */
  withDeadlines(deadlines: Deadlines): AwsClientSetup;
}

export interface Deadlines {
  readonly connectionTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxAttempts: number;
}

/**
 * The primary region's deadlines when source.failoverRegion is set: each
 * attempt gets 2 s to connect and 2 s of silence (instead of 3 s and 10 s),
 * and there are 2 attempts (instead of 3), so a primary that hangs fails over
 * after about 4 s instead of about 31 s (3 x 10 s + backoff); a reset or a 5xx
 * fails over as fast as before. The failover region keeps the full deadlines:
 * it is the last resort. A primary silent for 2 s is treated as down:
 * the failover region holds the same values. Measured: test/bench/failover.ts
 * (docs/reliability.md, "Failover: time to the failover region").
 */
export const FAILOVER_DEADLINES: Deadlines = { connectionTimeoutMs: 2000, requestTimeoutMs: 2000, maxAttempts: 2 };
/** The deadlines of every other client (docs/network.md). */
const DEFAULT_DEADLINES = { connectionTimeoutMs: 3000, requestTimeoutMs: 10_000, maxAttempts: 3 };

/** Region: config, then the environment, then the region of an ARN id (a secret's or a parameter's). */
export function resolveRegion(configured: string | undefined, specs: readonly SecretSpec[]): string | undefined {
  if (configured) return configured;
  const env = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION;
  if (env) return env;
  for (const s of specs) {
    const m = /^arn:aws[a-z-]*:(?:secretsmanager|ssm):([a-z0-9-]+):/.exec(s.id);
    if (m?.[1]) return m[1];
  }
  return undefined;
}

/**
 * The setup every service client of one source shares.
 * @throws CredentialsError (terminal) when no region can be found.
 */
export function createAwsClientSetup(specs: readonly SecretSpec[], options: AwsClientOptions): AwsClientSetup {
  const region = resolveRegion(options.region, specs);
  if (!region) {
    throw new CredentialsError('no AWS region: set source.region in the config, or AWS_REGION in the container environment', false);
  }
  const requestHandler = createRequestHandler(options);
  const plugins = [...(options.plugins ?? [])];
  const env = process.env;
  const kind = identityKind(env, options.allowNodeRole === true);
  const pod = kind === 'pod-identity' ? podIdentityEnv(env) : undefined;
  const podProvider = pod ? podIdentityProvider(pod.fullUri, pod.tokenFile) : undefined;
  const stale = staleReporter(options.log);
  // One identity for every region: the pod's (its kind's own provider; the default chain only for
  // node-role), then the assumed role. Each layer caches its credentials once for all regions; a
  // refresh goes to STS in the region of the client that needs it (docs/aws.md, "STS endpoint").
  const base = sharedAcrossRegions((r) => {
    const clientConfig = { region: r, requestHandler };
    switch (kind) {
      case 'env-keys':
        return fromEnv();
      case 'irsa':
        return webIdentityProvider(env, clientConfig, plugins);
      case 'pod-identity':
        return podProvider as AwsCredentialIdentityProvider;
      // An ECS task role (or a container endpoint without a token file): the task's identity, not the node's.
      case 'container':
        return fromContainerMetadata({ timeout: 2000, maxRetries: 2 });
      case 'profile':
        return fromIni({ clientConfig, clientPlugins: plugins });
      case 'node-role':
        return fromNodeProviderChain({
          clientConfig,
          clientPlugins: plugins,
          // Pod Identity agent: the SDK's default 1 s timeout only warns; our deadline below aborts.
          timeout: 2000,
          maxRetries: 2,
        });
    }
  }, stale);
  const { assumeRoleArn } = options;
  const identity = assumeRoleArn
    ? sharedAcrossRegions(
        (r) =>
          fromTemporaryCredentials({
            params: { RoleArn: assumeRoleArn, RoleSessionName: 'secrets-agent', DurationSeconds: 3600 },
            masterCredentials: base(r),
            clientConfig: { region: r, requestHandler },
            clientPlugins: plugins,
          }),
        stale,
      )
    : base;
  const setupFor = (r: string, handler = requestHandler, maxAttempts = DEFAULT_DEADLINES.maxAttempts): AwsClientSetup => ({
    region: r,
    assumeRoleArn,
    identity: kind,
    config: {
      region: r,
      requestHandler: handler,
      maxAttempts,
      credentials: withDeadline(identity(r), options.credentialsTimeoutMs ?? 15_000, options.onCredentials, options.onCredentialsError),
    },
    use(client) {
      for (const p of plugins) client.middlewareStack.use(p as never);
    },
    forRegion: (other) => setupFor(other),
    withDeadlines: (d) => setupFor(r, createRequestHandler({ ...options, connectionTimeoutMs: d.connectionTimeoutMs, requestTimeoutMs: d.requestTimeoutMs }), d.maxAttempts),
  });
  return setupFor(region);
}

/**
 * One handler for the service clients and the nested STS clients: all get the
 * deadlines and the egress proxy. Through a proxy the connection timeout covers
 * the TCP connection to the proxy; the request timeout (socket idle) also covers
 * a proxy that accepts and never answers the CONNECT.
 */
function createRequestHandler(options: AwsClientOptions): NodeHttpHandler {
  const proxyEnv = egressProxyEnv(process.env);
  const agentOptions = { keepAlive: true, maxSockets: 50, ...(proxyEnv ? { proxyEnv } : {}) };
  return new NodeHttpHandler({
    connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_DEADLINES.connectionTimeoutMs,
    requestTimeout: options.requestTimeoutMs ?? DEFAULT_DEADLINES.requestTimeoutMs,
    throwOnRequestTimeout: true,
    httpAgent: new HttpAgent(agentOptions),
    httpsAgent: new HttpsAgent(agentOptions),
  });
}

/** The identity in use (logged once at start-up): region, credential kind, assumed role, endpoint overrides. */
export function describeAwsIdentity(setup: AwsClientSetup, services: { readonly ssm: boolean }): Record<string, string> {
  const env = process.env;
  const id: Record<string, string> = { source: 'aws', region: setup.region, identity: setup.identity };
  switch (setup.identity) {
    case 'irsa':
      id.credentials = 'web-identity (IRSA)';
      id.roleArn = env.AWS_ROLE_ARN ?? '';
      id.tokenFile = env.AWS_WEB_IDENTITY_TOKEN_FILE ?? '';
      break;
    case 'pod-identity':
      id.credentials = 'container (EKS Pod Identity)';
      id.credentialsEndpoint = env.AWS_CONTAINER_CREDENTIALS_FULL_URI ?? '';
      id.tokenFile = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE ?? '';
      break;
    case 'container':
      id.credentials = 'container endpoint (ECS task role)';
      id.credentialsEndpoint = env.AWS_CONTAINER_CREDENTIALS_FULL_URI ?? 'relative';
      break;
    case 'env-keys':
      id.credentials = 'environment keys';
      break;
    case 'profile':
      id.credentials = 'profile';
      id.profile = env.AWS_PROFILE ?? 'default';
      break;
    case 'node-role':
      id.credentials = "default chain, instance metadata included (the node's role; source.allowNodeRole)";
      break;
  }
  if (setup.assumeRoleArn) id.assumeRoleArn = setup.assumeRoleArn;
  if (env.AWS_ENDPOINT_URL_SECRETS_MANAGER || env.AWS_ENDPOINT_URL) {
    id.endpoint = env.AWS_ENDPOINT_URL_SECRETS_MANAGER ?? env.AWS_ENDPOINT_URL ?? '';
  }
  if (services.ssm && (env.AWS_ENDPOINT_URL_SSM || env.AWS_ENDPOINT_URL)) {
    id.ssmEndpoint = env.AWS_ENDPOINT_URL_SSM ?? env.AWS_ENDPOINT_URL ?? '';
  }
  Object.assign(id, describeProxy(env));
  return id;
}

/** The SourceError for a failed call about one spec: credential failures keep their own code and message. */
export function wrapAwsError(err: unknown, spec: SecretSpec): SourceError {
  if (err instanceof CredentialsError) {
    return new SourceError(
      { secret: spec.name, secretId: spec.id, code: 'CredentialsError', transient: err.transient, message: err.message + networkHint(err.message) },
      { cause: err },
    );
  }
  // Errors the SDK wraps around a credential failure surface with the provider's name.
  if (err instanceof Error && err.name === 'CredentialsProviderError') {
    const ce = credentialsError(err);
    return new SourceError(
      { secret: spec.name, secretId: spec.id, code: 'CredentialsError', transient: ce.transient, message: ce.message + networkHint(ce.message) },
      { cause: err },
    );
  }
  const se = toSourceError(err, spec.name, spec.id, kindOf(spec) === 'secret' ? 'secretsmanager' : 'ssm');
  const hint = networkHint(se.message);
  if (!hint) return se;
  const message = se.message.slice(`secret "${spec.name}" (${spec.id}): `.length) + hint;
  return new SourceError({ secret: spec.name, secretId: spec.id, code: se.code, transient: se.transient, message }, { cause: err });
}

/** Node's codes for a certificate that does not verify (an endpoint or a TLS-inspecting gateway with a private CA). */
const CERT_ERROR = /\b(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(?:_LOCALLY)?|CERT_UNTRUSTED|CERT_HAS_EXPIRED|ERR_TLS_CERT_ALTNAME_INVALID)\b/;
const NETWORK_ERROR = /TimeoutError|timed out|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|socket hang up/;

/**
 * What to check when a call fails on the network path: a certificate the agent
 * does not trust (NODE_EXTRA_CA_CERTS), or a timeout / network error while an
 * egress proxy is configured (named without its credentials). '' otherwise.
 */
function networkHint(message: string): string {
  if (CERT_ERROR.test(message)) {
    return ' — the certificate of the AWS endpoint (or of a TLS-inspecting proxy) is not trusted: give its CA bundle (PEM) to NODE_EXTRA_CA_CERTS (docs/network.md)';
  }
  const urls = proxyUrls(process.env);
  const proxy = urls.https ?? urls.http;
  if (proxy && NETWORK_ERROR.test(message)) {
    const name = urls.https ? 'HTTPS_PROXY' : 'HTTP_PROXY';
    return ` — the requests go through the egress proxy ${redactProxy(proxy)} (${name}): check that it is up and lets the AWS endpoints through, or list the endpoint in NO_PROXY (docs/network.md)`;
  }
  return '';
}
