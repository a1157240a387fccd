// The pod's AWS identity, as credential providers: which kind the environment
// gives (identityKind), one provider per kind, and the layers every provider
// gets (an overall deadline, one cache shared across regions). aws-client.ts
// composes them into the setup its service clients share. The AWS facts below,
// with their sources: docs/aws.md.
//
// Identity: the pod's own, never the node's by default. The kind is chosen
// once from the environment (identityKind: env keys, IRSA, EKS Pod Identity,
// an ECS container endpoint, a profile); with none, identityKind throws a
// SetupError naming the ServiceAccount annotation or Pod Identity association
// to create, unless source.allowNodeRole opts into the default chain with
// instance metadata (IMDS). Each kind gets its own provider, so a failing one
// never falls through to IMDS. Token files are re-read (and trimmed) on every
// refresh; one that is missing or empty after it was read once is transient.
// A refresh that fails transiently while the cached credentials have not
// expired yet (the SDK refreshes 5 minutes early) keeps serving them: logged
// once, and once when a refresh succeeds again (staleReporter,
// sharedAcrossRegions).
//
// Deadlines: resolution as a whole gets one (withDeadline: the SDK sets none,
// and a hanging credential endpoint is not aborted by abortSignal); the Pod
// Identity GET gets its own per request, and uses no shared Agent (never
// proxied).
//
// Every failure is a CredentialsError (transient or terminal); credentialsError
// turns what the SDK throws into one, with a hint at what to check.
import { fromWebToken } from '@aws-sdk/credential-providers';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, Pluggable } from '@smithy/types';
import { get as httpGetRaw } from 'node:http';
import { get as httpsGet } from 'node:https';
import { CredentialsError, SetupError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import { errorCode, isTerminal } from './classify.ts';

/** Wrap a provider with an overall deadline: the SDK has none for credential resolution. */
export function withDeadline(
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
export function webIdentityProvider(
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
export function podIdentityEnv(env: NodeJS.ProcessEnv): { fullUri: string; tokenFile: string } | undefined {
  const fullUri = env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
  const tokenFile = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
  return fullUri && tokenFile ? { fullUri, tokenFile } : undefined;
}

export function credentialsError(err: unknown): CredentialsError {
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

/** Credentials this close to expiry are refreshed (the SDK's own margin: 5 minutes). */
const REFRESH_MARGIN_MS = 5 * 60_000;

/** Credentials closer than this to their actual expiry are not served any more, even when a refresh failed. */
const STALE_MARGIN_MS = 30_000;

/** Reports a streak of failed refreshes served from the cache: one line when it starts, one when it ends. */
export interface StaleReporter {
  serving(err: unknown, until: Date): void;
  refreshed(): void;
}

export function staleReporter(log: Logger | undefined): StaleReporter {
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
export function sharedAcrossRegions(
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
