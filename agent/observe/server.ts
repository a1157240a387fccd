// The sidecar's HTTP endpoints: /metrics (Prometheus text format), /healthz
// (liveness) and /readyz (readiness: after the first complete render).
//
// Contract:
// - GET and HEAD only (405 with `Allow` otherwise); unknown paths are 404; a
//   query string is ignored.
// - /healthz: 200 "ok" while the loop is alive, else 503.
// - /readyz: 200 "ok" after the first complete render, else 503 with a short
//   reason. The reason comes from the health callback and must not carry a
//   secret value (names and codes only).
// - Handling a request never throws: a failing health callback answers 503, a
//   failing metrics collection answers 500; both are logged.
// - A start that cannot listen (address in use, host that does not resolve,
//   no permission) rejects with a SetupError naming server.listen and the fix:
//   an operator mistake, exit 2, not a bug.
// - close() stops listening, drops idle keep-alive sockets at once and cuts
//   requests still running after a short grace, so shutdown stays within the
//   agent's 5 s budget.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SetupError } from '../errors.ts';
import type { Logger } from './log.ts';
import type { AgentMetrics } from './metrics.ts';

export interface Health {
  /** The refresh loop is alive (liveness). */
  live: boolean;
  /** The first complete render is on the volume (readiness). */
  ready: boolean;
  /** Why not ready, shown in the /readyz body (names and codes only, never values). */
  reason?: string;
}

export interface ServerOptions {
  /** "host:port"; "[::1]:9102" for IPv6; port 0 picks a free port (see `address`). */
  listen: string;
  metrics: AgentMetrics;
  health: () => Health;
  log: Logger;
  /**
   * How long close() lets running requests finish before cutting them (idle sockets close at once).
   * @default 1000
   */
  closeGraceMs?: number;
}

export interface AgentServer {
  /** The bound address (the real port when `listen` asked for port 0). */
  readonly address: { host: string; port: number };
  /** Stop listening and close every connection; resolves when the server is closed. */
  close(): Promise<void>;
}

/** Parses "host:port" / "[v6]:port" / ":port" (all interfaces). Throws a SetupError naming the `server.listen` key. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new SetupError('server.listen', `server.listen: "${listen}" is not "host:port" (e.g. "0.0.0.0:9102", "127.0.0.1:0", "[::]:9102"); the port must be 0..65535`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

const TEXT = 'text/plain; charset=utf-8';

export async function startServer(options: ServerOptions): Promise<AgentServer> {
  const { metrics, health, log } = options;
  const bind = parseListen(options.listen);
  const graceMs = options.closeGraceMs ?? 1000;

  const send = (req: IncomingMessage, res: ServerResponse, status: number, body: string, type = TEXT): void => {
    res.writeHead(status, {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const probe = (): Health | undefined => {
    try {
      return health();
    } catch (err) {
      log.warn({ err }, 'health check callback failed');
      return undefined;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
      send(req, res, 404, 'not found: try /metrics, /healthz or /readyz\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(req, res, 405, 'method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      const h = probe();
      if (h?.live) send(req, res, 200, 'ok\n');
      else send(req, res, 503, h ? 'not live: the refresh loop stopped\n' : 'not live: health check failed\n');
      return;
    }
    if (path === '/readyz') {
      const h = probe();
      if (h?.ready) send(req, res, 200, 'ok\n');
      else send(req, res, 503, `not ready: ${h ? (h.reason ?? 'the first render is not complete') : 'health check failed'}\n`);
      return;
    }
    let body: string;
    try {
      body = await metrics.metrics();
    } catch (err) {
      log.error({ err }, 'collecting metrics failed');
      send(req, res, 500, 'collecting metrics failed\n');
      return;
    }
    send(req, res, 200, body, metrics.contentType);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'HTTP request handling failed');
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': TEXT });
        res.end('internal error\n');
      } else {
        res.destroy();
      }
    });
  });
  // A scrape or a probe is small and quick: do not let slow clients hold sockets.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const free = 'set server.listen to a free "host:port", or "" to disable the server';
      const [why, fix] =
        err.code === 'EADDRINUSE'
          ? ['the address is already in use (another process, or a second agent in this pod?)', free]
          : err.code === 'EADDRNOTAVAIL'
            ? ['no network interface has this address', 'set server.listen to an address of this pod (e.g. "0.0.0.0:9102"), or "" to disable the server']
            : err.code === 'EACCES'
              ? ['permission denied (ports below 1024 need privileges)', 'set server.listen to a port above 1023, or "" to disable the server']
              : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' || err.code === 'EAI_FAIL' || err.code === 'EAI_NONAME'
                ? [`the host "${bind.host}" does not resolve (${err.code})`, 'set server.listen to an IP address (e.g. "0.0.0.0:9102") or a resolvable name, or "" to disable the server']
                : [err.code ?? err.message, free];
      reject(new SetupError('server.listen', `cannot listen on server.listen "${options.listen}": ${why}; ${fix}`, err.code, { cause: err }));
    };
    server.once('error', onError);
    server.listen(bind.port, bind.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'metrics/health server error'));

  const addr = server.address() as AddressInfo;
  const address = { host: addr.address, port: addr.port };
  log.debug({ listen: `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}` }, 'serving /metrics, /healthz, /readyz');

  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.once('close', () => clearTimeout(force));
      });
      return closing;
    },
  };
}
