// The egress proxy, read from the environment: what the request handler's
// Agents are given, and what the identity line and error hints name.
//
// The handler's own http/https Agents ignore HTTP(S)_PROXY unless given
// `proxyEnv` (Node 24's built-in proxy support: CONNECT for https,
// absolute-form for http, Proxy-Authorization from the URL's user:password), so
// they get one built from the environment by `egressProxyEnv`: NO_PROXY with
// curl/Go semantics (a name matches its subdomains, IPv4 CIDR), and loopback,
// the Pod Identity / ECS agents and instance metadata never proxied
// (ALWAYS_DIRECT). A proxy URL is only ever shown redacted (redactProxy: no
// user:password). docs/network.md; the Node and Go facts: docs/aws.md.
import { SetupError } from '../errors.ts';

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
export function proxyUrls(env: NodeJS.ProcessEnv): { https: string | undefined; http: string | undefined } {
  return { https: env.https_proxy || env.HTTPS_PROXY || undefined, http: env.http_proxy || env.HTTP_PROXY || undefined };
}

/**
 * The `proxyEnv` for the handler's Agents, or undefined when no proxy is set.
 * @throws SetupError (exit 2) for a proxy URL that does not parse, named without its credentials.
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
      // An operator's setting, like server.listen: a SetupError (exit 2), shown without its credentials.
      const shown = value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i, '$1***@').slice(0, 100);
      const why = u ? `its scheme is "${u.protocol.slice(0, -1)}", not http or https` : 'it is not a URL';
      throw new SetupError(name, `the environment variable ${name} ("${shown}") is not a proxy URL: ${why}; set it to http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT), or unset it`);
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

/** The egress proxy for the identity line: `proxy` (https), `httpProxy` when it differs, `noProxy` as set. */
export function describeProxy(env: NodeJS.ProcessEnv): Record<string, string> {
  const urls = proxyUrls(env);
  const out: Record<string, string> = {};
  if (urls.https) out.proxy = redactProxy(urls.https);
  if (urls.http && (!urls.https || redactProxy(urls.http) !== out.proxy)) out.httpProxy = redactProxy(urls.http);
  const noProxy = env.no_proxy ?? env.NO_PROXY;
  if (Object.keys(out).length && noProxy) out.noProxy = noProxy;
  return out;
}
