// A real forward (egress) proxy for tests, as Squid or an enterprise gateway is:
// `CONNECT host:port` opens a TCP tunnel (https), an absolute-form request
// (`POST http://host:port/path`) is forwarded (http). Every request is counted
// by target host and method, so a test can show which calls went through it.
//
// `hosts` maps names only the proxy knows to addresses (`moto.test` → 127.0.0.1):
// a client that reaches `moto.test` did so through the proxy, since it could
// not resolve the name itself. `auth` makes it answer 407 without the right
// `Proxy-Authorization: Basic …`. `hang` makes it accept connections and never
// answer (a dead gateway). close() destroys every socket and tunnel.
import { createServer, request, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';

export interface ProxiedRequest {
  /** CONNECT for a tunnel, else the method of the absolute-form request. */
  readonly method: string;
  /** host:port as the client asked (before `hosts` mapping). */
  readonly target: string;
  readonly at: number;
  /** The Proxy-Authorization header as received (tests check it is sent, never log it). */
  readonly proxyAuthorization: string | undefined;
}

export interface ForwardProxy {
  /** http://127.0.0.1:PORT (no credentials). */
  readonly url: string;
  readonly port: number;
  readonly requests: ProxiedRequest[];
  /** Requests (after a 407, if any) to targets whose host is `host`. */
  count(host: string, method?: string): number;
  hang: boolean;
  close(): Promise<void>;
}

export interface ForwardProxyOptions {
  hosts?: Record<string, string>;
  /** "user:password" the client must send. */
  auth?: string;
  hang?: boolean;
}

function splitHostPort(target: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(target) ?? /^([^:]+)(?::(\d+))?$/.exec(target);
  return { host: m?.[1] ?? target, port: m?.[2] ? Number(m[2]) : defaultPort };
}

export async function startForwardProxy(options: ForwardProxyOptions = {}): Promise<ForwardProxy> {
  const sockets = new Set<Socket>();
  const requests: ProxiedRequest[] = [];
  const expected = options.auth ? `Basic ${Buffer.from(options.auth).toString('base64')}` : undefined;
  const resolve = (host: string): string => options.hosts?.[host] ?? host;
  const authorized = (req: IncomingMessage): boolean => !expected || req.headers['proxy-authorization'] === expected;

  const server = createServer((req, res) => {
    if (proxy.hang) return; // accepted, never answered
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end('absolute-form request expected');
      return;
    }
    requests.push({ method: req.method ?? 'GET', target: url.host, at: Date.now(), proxyAuthorization: req.headers['proxy-authorization'] });
    if (!authorized(req)) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' }).end();
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const up = request(
      { host: resolve(url.hostname), port: url.port || 80, method: req.method, path: url.pathname + url.search, headers, agent: false },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });

  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (proxy.hang) return;
    const target = req.url ?? '';
    requests.push({ method: 'CONNECT', target, at: Date.now(), proxyAuthorization: req.headers['proxy-authorization'] });
    if (!authorized(req)) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const { host, port } = splitHostPort(target, 443);
    const upstream = connect(port, resolve(host), () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => {
      client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n');
    });
    client.on('close', () => upstream.destroy());
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const proxy: ForwardProxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    hang: options.hang ?? false,
    count: (host, method) =>
      requests.filter((r) => splitHostPort(r.target, 0).host === host && (method === undefined || r.method === method) && (!expected || r.proxyAuthorization === expected)).length,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return proxy;
}
