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
// Identity: the pod's own, never the node's by default. The kind is chosen
// once from the environment (identityKind: env keys, IRSA, EKS Pod Identity,
// an ECS container endpoint, a profile); with none, createAwsClientSetup throws
// a SetupError naming the ServiceAccount annotation or Pod Identity association
// to create, unless source.allowNodeRole opts into the default chain with
// instance metadata (IMDS). Each kind gets its own provider, so a failing one
// never falls through to IMDS. Token files are re-read (and trimmed) on every
// refresh; one that is missing or empty after it was read once is transient.
// A refresh that fails transiently while the cached credentials have not
// expired yet (the SDK refreshes 5 minutes early) keeps serving them: logged
// once, and once when a refresh succeeds again.
//
// Egress proxies: the handler's own http/https Agents ignore HTTP(S)_PROXY
// unless given `proxyEnv` (Node 24's built-in proxy support: CONNECT for https,
// absolute-form for http, Proxy-Authorization from the URL's user:password), so
// they get one built from the environment by `egressProxyEnv`: NO_PROXY with
// curl/Go semantics (a name matches its subdomains, IPv4 CIDR), and loopback,
// the Pod Identity / ECS agents and instance metadata never proxied. The Pod
// Identity GET uses no shared Agent at all (never proxied). docs/network.md.
import { fromContainerMetadata, fromEnv, fromIni, fromNodeProviderChain, fromTemporaryCredentials, fromWebToken } from '@aws-sdk/credential-providers';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, Pluggable } from '@smithy/types';
import { Agent as HttpAgent, get as httpGetRaw } from 'node:http';
import { Agent as HttpsAgent, get as httpsGet } from 'node:https';
import { CredentialsError, SetupError, SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import { kindOf, type SecretSpec } from '../types.ts';
import { errorCode, isTerminal, toSourceError } from './classify.ts';

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
}

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

/** Wrap a provider with an overall deadline: the SDK has none for credential resolution. */
function withDeadline(
  provider: AwsCredentialIdentityProvider,
  ms: number,
  onOk?: (c: AwsCredentialIdentity) => void,
  onErr?: (e: CredentialsError) => void,
): AwsCredentialIdentityProvider {
  return async (props) => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new CredentialsError(`timed out after ${ms / 1000}s resolving AWS credentials (STS or the Pod Identity agent did not answer)`, true)),
        ms,
      );
      timer.unref();
    });
    try {
      const creds = await Promise.race([provider(props), deadline]);
      onOk?.(creds);
      return creds;
    } catch (err) {
      const e = err instanceof CredentialsError ? err : credentialsError(err);
      onErr?.(e);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * EKS Pod Identity: GET the credentials from the Pod Identity agent ourselves
 * (the SDK's behaviour: docs/aws.md, EKS Pod Identity).
 *
 * Two SDK behaviours make its own provider unfit for a daemon: it sends the
 * token file as the raw Authorization header, so a trailing newline (which many
 * tools add) fails every request with ERR_INVALID_CHAR; and its 1-2 s timeout
 * only logs a warning (plain text on stderr) while the request hangs on, one
 * leaked socket per attempt. Here the token file is re-read on every fetch (the
 * kubelet rotates it) and trimmed, and each request is aborted at its deadline.
 */
const POD_IDENTITY_HOSTS = new Set(['169.254.170.2', '169.254.170.23', '[fd00:ec2::23]', 'localhost', '127.0.0.1', '[::1]']);

/**
 * One GET with a hard deadline (the socket is destroyed, nothing lingers). node:http
 * rather than fetch: fetch would load undici (~13 MB, ~45 ms) for this one request.
 */
function httpGet(url: URL, authorization: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? httpsGet : httpGetRaw;
    // agent: false: a fresh Agent without proxyEnv, so the link-local agent is never sent to a proxy
    // (not even with NODE_USE_ENV_PROXY=1, which only changes the global agent).
    const req = get(url, { headers: { Authorization: authorization }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })), timeoutMs);
    timer.unref();
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function podIdentityProvider(fullUri: string, tokenFile: string, timeoutMs = 2000): AwsCredentialIdentityProvider {
  const url = new URL(fullUri);
  // The SDK's rule: https anywhere, plain http only to the link-local agent or loopback.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (POD_IDENTITY_HOSTS.has(url.hostname) || url.hostname.startsWith('127.')))) {
    throw new CredentialsError(`AWS_CONTAINER_CREDENTIALS_FULL_URI ${url.origin} is not allowed: use https, or the EKS Pod Identity agent (169.254.170.23)`, false);
  }
  const readToken = tokenReader(tokenFile, 'the EKS Pod Identity token file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)');
  return async () => {
    const token = await readToken();
    let res: { status: number; body: string };
    try {
      res = await httpGet(url, token, timeoutMs);
    } catch (err) {
      const e = err as Error & { code?: string };
      const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.code ?? e.name);
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} failed: ${why}`, true, { cause: err });
    }
    const body = res.body;
    if (res.status < 200 || res.status > 299) {
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} answered HTTP ${res.status}`, res.status >= 500 || res.status === 429);
    }
    let c: { AccessKeyId?: unknown; SecretAccessKey?: unknown; Token?: unknown; Expiration?: unknown; AccountId?: unknown };
    try {
      c = JSON.parse(body) as typeof c;
    } catch {
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} answered something that is not JSON`, true);
    }
    if (typeof c.AccessKeyId !== 'string' || typeof c.SecretAccessKey !== 'string' || typeof c.Token !== 'string') {
      throw new CredentialsError(`the EKS Pod Identity agent at ${url.origin} answered without AccessKeyId/SecretAccessKey/Token`, true);
    }
    return {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.Token,
      ...(typeof c.Expiration === 'string' ? { expiration: new Date(c.Expiration) } : {}),
      ...(typeof c.AccountId === 'string' ? { accountId: c.AccountId } : {}),
    };
  };
}

/**
 * Reads a token file afresh on each call (the kubelet rotates it), trimmed.
 * Missing or empty before it was ever read: terminal (a wrong path or volume).
 * Missing or empty after it was read once: transient (the kubelet swaps the
 * projected volume's ..data link; the file comes back).
 */
function tokenReader(file: string, what: string): () => Promise<string> {
  let seen = false;
  return async () => {
    let token: string;
    try {
      token = (await readFile(file, 'utf8')).trim();
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'EIO';
      throw new CredentialsError(
        seen
          ? `cannot read ${what} ${file}: ${code}; it was readable before (the kubelet may be rotating it); retrying`
          : `cannot read ${what} ${file}: ${code}; check the projected token volume and its mount in the pod spec`,
        seen,
        { cause: err },
      );
    }
    if (!token) {
      throw new CredentialsError(
        seen ? `${what} ${file} is empty; it held a token before (the kubelet may be rotating it); retrying` : `${what} ${file} is empty; check the projected token volume in the pod spec`,
        seen,
      );
    }
    seen = true;
    return token;
  };
}

/**
 * IRSA: AssumeRoleWithWebIdentity with the projected service-account token,
 * re-read and trimmed on every refresh (the SDK's fromTokenFile reads it
 * untrimmed, and a missing file is an error it cannot tell from a wrong path).
 */
function webIdentityProvider(
  env: NodeJS.ProcessEnv,
  clientConfig: { region: string; requestHandler: NodeHttpHandler },
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  clientPlugins: Pluggable<any, any>[],
): AwsCredentialIdentityProvider {
  const roleArn = env.AWS_ROLE_ARN ?? '';
  const tokenFile = env.AWS_WEB_IDENTITY_TOKEN_FILE ?? '';
  const readToken = tokenReader(tokenFile, 'the web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE)');
  return async (props) => {
    const webIdentityToken = await readToken();
    return fromWebToken({ roleArn, roleSessionName: env.AWS_ROLE_SESSION_NAME ?? `secrets-agent-${Date.now()}`, webIdentityToken, clientConfig, clientPlugins })(props);
  };
}

/** Whose identity signs the agent's requests; node-role only with source.allowNodeRole. */
export type IdentityKind = 'env-keys' | 'irsa' | 'pod-identity' | 'container' | 'profile' | 'node-role';

/** A shared config or credentials file with something in it (AWS_CONFIG_FILE=/dev/null counts as none). */
function profileFile(env: NodeJS.ProcessEnv): string | undefined {
  for (const f of [env.AWS_CONFIG_FILE ?? join(homedir(), '.aws', 'config'), env.AWS_SHARED_CREDENTIALS_FILE ?? join(homedir(), '.aws', 'credentials')]) {
    try {
      const st = statSync(f);
      if (st.isFile() && st.size > 0) return f;
    } catch {
      // absent
    }
  }
  return undefined;
}

export const NO_IDENTITY_FIX =
  'annotate the pod\'s ServiceAccount with eks.amazonaws.com/role-arn: arn:aws:iam::ACCOUNT:role/ROLE (IRSA) and restart the pod, ' +
  'or create an EKS Pod Identity association (aws eks create-pod-identity-association --cluster-name CLUSTER --namespace NAMESPACE --service-account SERVICE_ACCOUNT --role-arn arn:aws:iam::ACCOUNT:role/ROLE) and restart the pod; ' +
  "to use the node's instance role instead, set source.allowNodeRole: true";

/**
 * The identity the environment gives the pod, in the SDK chain's order (environment keys, then IRSA,
 * Pod Identity / container endpoint, then a profile). None: the node's role only with allowNodeRole.
 * @throws SetupError (key source.allowNodeRole) naming what is missing and how to fix it.
 */
export function identityKind(env: NodeJS.ProcessEnv, allowNodeRole: boolean): IdentityKind {
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) return 'env-keys';
  if (env.AWS_ROLE_ARN && env.AWS_WEB_IDENTITY_TOKEN_FILE) return 'irsa';
  if (env.AWS_CONTAINER_CREDENTIALS_FULL_URI && env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) return 'pod-identity';
  if (env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || env.AWS_CONTAINER_CREDENTIALS_FULL_URI) return 'container';
  if (env.AWS_PROFILE || profileFile(env)) return 'profile';
  if (allowNodeRole) return 'node-role';
  const partial = [
    env.AWS_ROLE_ARN && !env.AWS_WEB_IDENTITY_TOKEN_FILE ? 'AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not (the IRSA webhook sets both)' : '',
    !env.AWS_ROLE_ARN && env.AWS_WEB_IDENTITY_TOKEN_FILE ? 'AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not (the IRSA webhook sets both)' : '',
    env.AWS_ACCESS_KEY_ID && !env.AWS_SECRET_ACCESS_KEY ? 'AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not' : '',
    !env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY ? 'AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not' : '',
  ].filter(Boolean);
  throw new SetupError(
    'source.allowNodeRole',
    `no AWS identity of the pod's own found in the container environment: no IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), ` +
      `no EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), no environment keys, no profile` +
      `${partial.length ? ` (${partial.join('; ')})` : ''}; the agent does not fall back to the node's instance role (instance metadata); ${NO_IDENTITY_FIX}`,
  );
}

/** The Pod Identity agent's address and the token file (identityKind decided it is in use). */
function podIdentityEnv(env: NodeJS.ProcessEnv): { fullUri: string; tokenFile: string } | undefined {
  const fullUri = env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
  const tokenFile = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
  return fullUri && tokenFile ? { fullUri, tokenFile } : undefined;
}

function credentialsError(err: unknown): CredentialsError {
  const code = errorCode(err);
  const raw = err instanceof Error ? err.message : String(err);
  let hint = '';
  if (code === 'InvalidIdentityToken' || /web identity|token/i.test(raw)) {
    hint = ' — check AWS_WEB_IDENTITY_TOKEN_FILE (the projected service-account token) and the role trust policy (k8s-examples/iam/irsa-trust-policy.json)';
  } else if (/ENOENT/.test(raw)) {
    hint = ' — a credentials file named in the environment does not exist';
  } else if (/Could not (?:load|resolve) credentials/i.test(raw)) {
    hint = ' — no IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), Pod Identity or other AWS credentials were found in this container';
  }
  const terminal = isTerminal(code) || /ENOENT|Could not (?:load|resolve) credentials/i.test(raw);
  const detail = raw.startsWith(code) ? raw.slice(0, 300) : `${code}: ${raw.slice(0, 300)}`;
  return new CredentialsError(`cannot get AWS credentials: ${detail}${hint}`, !terminal, { cause: err });
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
  const setupFor = (r: string): AwsClientSetup => ({
    region: r,
    assumeRoleArn,
    identity: kind,
    config: {
      region: r,
      requestHandler,
      maxAttempts: 3,
      credentials: withDeadline(identity(r), options.credentialsTimeoutMs ?? 15_000, options.onCredentials, options.onCredentialsError),
    },
    use(client) {
      for (const p of plugins) client.middlewareStack.use(p as never);
    },
    forRegion: setupFor,
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
    connectionTimeout: options.connectionTimeoutMs ?? 3000,
    requestTimeout: options.requestTimeoutMs ?? 10_000,
    throwOnRequestTimeout: true,
    httpAgent: new HttpAgent(agentOptions),
    httpsAgent: new HttpsAgent(agentOptions),
  });
}

/**
 * Never through a proxy, whatever NO_PROXY says: loopback (as Go's net/http),
 * the EKS Pod Identity agent, the ECS credentials endpoint, instance metadata.
 * In Node's NO_PROXY syntax (IPv4 ranges, IPv6 without brackets).
 */
export const ALWAYS_DIRECT = [
  'localhost',
  '*.localhost',
  '127.0.0.0-127.255.255.255',
  '::1',
  '169.254.170.23',
  'fd00:ec2::23',
  '169.254.170.2',
  '169.254.169.254',
  'fd00:ec2::254',
];

function ipv4ToInt(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

const intToIpv4 = (n: number): string => [24, 16, 8, 0].map((b) => Math.floor(n / 2 ** b) % 256).join('.');

/**
 * NO_PROXY (curl / Go semantics) as Node's agents match it: Node matches a plain
 * name exactly and knows IPv4 ranges, not CIDR. So `example.com` and
 * `.example.com` become `example.com,*.example.com`; `10.0.0.0/8` becomes
 * `10.0.0.0-10.255.255.255`; `[fd00::1]` loses its brackets; `*` stays.
 */
export function translateNoProxy(noProxy: string): string[] {
  const out: string[] = [];
  for (const raw of noProxy.split(/[,\s]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(entry);
    const base = cidr ? ipv4ToInt(cidr[1] ?? '') : undefined;
    if (cidr && base !== undefined && Number(cidr[2]) <= 32) {
      const size = 2 ** (32 - Number(cidr[2]));
      const start = Math.floor(base / size) * size;
      out.push(`${intToIpv4(start)}-${intToIpv4(start + size - 1)}`);
    } else if (entry.startsWith('[')) {
      out.push(entry.replace(/^\[([^\]]+)\](:\d+)?$/, (_m, ip: string, port: string | undefined) => (port ? `[${ip}]${port}` : ip)));
    } else if (entry === '*' || entry.startsWith('*.') || entry.includes(':') || ipv4ToInt(entry) !== undefined || entry.includes('-')) {
      out.push(entry);
    } else {
      const name = entry.replace(/^\./, '');
      out.push(name, `*.${name}`);
    }
  }
  return out;
}

/** The proxy URLs in effect (lower case wins, as in Node and curl). */
function proxyUrls(env: NodeJS.ProcessEnv): { https: string | undefined; http: string | undefined } {
  return { https: env.https_proxy || env.HTTPS_PROXY || undefined, http: env.http_proxy || env.HTTP_PROXY || undefined };
}

/**
 * The `proxyEnv` for the handler's Agents, or undefined when no proxy is set.
 * @throws CredentialsError (terminal) for a proxy URL that does not parse (named without its credentials).
 */
export function egressProxyEnv(env: NodeJS.ProcessEnv): Record<string, string> | undefined {
  const urls = proxyUrls(env);
  if (!urls.https && !urls.http) return undefined;
  for (const [name, value] of [['HTTPS_PROXY', urls.https], ['HTTP_PROXY', urls.http]] as const) {
    if (!value) continue;
    let u: URL | undefined;
    try {
      u = new URL(value);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
      throw new CredentialsError(
        `${name} is not a proxy URL reading the environment: ${value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i, '$1***@').slice(0, 100)}; set it to http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT)`,
        false,
      );
    }
  }
  const noProxy = [...translateNoProxy(env.no_proxy ?? env.NO_PROXY ?? ''), ...ALWAYS_DIRECT].join(',');
  return { ...(urls.https ? { HTTPS_PROXY: urls.https } : {}), ...(urls.http ? { HTTP_PROXY: urls.http } : {}), NO_PROXY: noProxy };
}

/** A proxy URL fit for logs: scheme, host and port, never user:password. */
export function redactProxy(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(unparsable)';
  }
}

/** Credentials this close to expiry are refreshed (the SDK's own margin: 5 minutes). */
const REFRESH_MARGIN_MS = 5 * 60_000;

/** Credentials closer than this to their actual expiry are not served any more, even when a refresh failed. */
const STALE_MARGIN_MS = 30_000;

/** Reports a streak of failed refreshes served from the cache: one line when it starts, one when it ends. */
interface StaleReporter {
  serving(err: unknown, until: Date): void;
  refreshed(): void;
}

function staleReporter(log: Logger | undefined): StaleReporter {
  let streak = false;
  return {
    serving(err, until) {
      if (streak) return;
      streak = true;
      const e = err instanceof CredentialsError ? err : credentialsError(err);
      log?.warn(
        { code: 'CredentialsRefreshFailed', expiresAt: until.toISOString() },
        `cannot refresh AWS credentials: ${e.message}; serving with the current ones until they expire at ${until.toISOString()} and retrying on every request`,
      );
    },
    refreshed() {
      if (!streak) return;
      streak = false;
      log?.info('AWS credentials refreshed again');
    },
  };
}

/**
 * One credential cache for all regions in front of a provider per region: a
 * region's provider is asked only when the cache holds nothing valid (or a
 * refresh is forced), and what it answers serves every region. A resolution
 * in flight is shared per region only, so a region whose STS hangs never holds
 * up another region's. A refresh that fails transiently while the cached
 * credentials are still good for STALE_MARGIN_MS keeps serving them (the SDK
 * refreshes 5 minutes before expiry: a token file being rotated, an STS blip
 * must not fail a check), reported once per streak.
 */
function sharedAcrossRegions(
  make: (region: string) => AwsCredentialIdentityProvider,
  stale: StaleReporter,
): (region: string) => AwsCredentialIdentityProvider {
  let cached: AwsCredentialIdentity | undefined;
  const providers = new Map<string, AwsCredentialIdentityProvider>();
  const pending = new Map<string, Promise<AwsCredentialIdentity>>();
  const valid = (c: AwsCredentialIdentity | undefined, margin: number): c is AwsCredentialIdentity =>
    c !== undefined && (c.expiration === undefined || c.expiration.getTime() - Date.now() > margin);
  return (region) => {
    let provider = providers.get(region);
    if (!provider) {
      provider = make(region);
      providers.set(region, provider);
    }
    const resolve = provider;
    return async (props) => {
      const force = (props as { forceRefresh?: boolean } | undefined)?.forceRefresh === true;
      if (!force && valid(cached, REFRESH_MARGIN_MS)) return cached;
      let p = pending.get(region);
      if (!p) {
        p = resolve(props).then(
          (c) => {
            stale.refreshed();
            return (cached = c);
          },
          (err: unknown) => {
            const transient = err instanceof CredentialsError ? err.transient : credentialsError(err).transient;
            const held = cached;
            if (!force && transient && valid(held, STALE_MARGIN_MS) && held.expiration) {
              stale.serving(err, held.expiration);
              return held;
            }
            throw err;
          },
        );
        pending.set(region, p);
        const clear = (): void => void pending.delete(region);
        p.then(clear, clear);
      }
      return p;
    };
  };
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

/** The egress proxy for the identity line: `proxy` (https), `httpProxy` when it differs, `noProxy` as set. */
function describeProxy(env: NodeJS.ProcessEnv): Record<string, string> {
  const urls = proxyUrls(env);
  const out: Record<string, string> = {};
  if (urls.https) out.proxy = redactProxy(urls.https);
  if (urls.http && (!urls.https || redactProxy(urls.http) !== out.proxy)) out.httpProxy = redactProxy(urls.http);
  const noProxy = env.no_proxy ?? env.NO_PROXY;
  if (Object.keys(out).length && noProxy) out.noProxy = noProxy;
  return out;
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
