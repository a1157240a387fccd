// A recording, fault-injecting HTTP proxy in front of moto (test support).
//
// It sees every request the agent sends (Secrets Manager by `x-amz-target`,
// STS by the Query `Action`), counts them, and can answer instead of moto:
// an error status and body, a reset connection, a response that hangs, a
// malformed body; or edit moto's JSON answer (moto 5.2 never reports
// `RotationEnabled: true` nor a `NextRotationDate`, so tests add them here).
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Socket } from 'node:net';

export interface Recorded {
  readonly operation: string;
  readonly at: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

export type Fault =
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> }
  | { kind: 'reset' }
  | { kind: 'hang' }
  | { kind: 'malformed' };

export interface Proxy {
  readonly url: string;
  readonly requests: Recorded[];
  /** Decide per request: a fault, or undefined to forward to moto. */
  fault: ((operation: string, req: Recorded) => Fault | undefined) | undefined;
  /** Edit moto's JSON answer before it is returned. */
  transform: ((operation: string, body: Record<string, unknown>) => Record<string, unknown>) | undefined;
  count(operation: string, since?: number): number;
  close(): Promise<void>;
}

export const throttled: Fault = {
  kind: 'status',
  status: 400,
  body: JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' }),
  headers: { 'content-type': 'application/x-amz-json-1.1' },
};
export const unavailable: Fault = { kind: 'status', status: 503, body: '{"__type":"ServiceUnavailable","message":"down"}' };

function operationOf(req: IncomingMessage, body: string): string {
  const target = req.headers['x-amz-target'];
  if (typeof target === 'string') return target.split('.').pop() ?? target;
  const m = /(?:^|&)Action=([A-Za-z]+)/.exec(body);
  return m?.[1] ?? `${req.method} ${req.url}`;
}

export interface ProxyOptions {
  /** Serve HTTPS with this key and certificate (PEM), as AWS endpoints do. */
  tls?: { key: string; cert: string };
}

export async function startProxy(upstream: string, options: ProxyOptions = {}): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const requests: Recorded[] = [];
  const hanging = new Set<ServerResponse>();
  const proxy: Proxy = {
    url: '',
    requests,
    fault: undefined,
    transform: undefined,
    count: (op, since = 0) => requests.filter((r) => r.operation === op && r.at >= since).length,
    close: async () => {
      for (const res of hanging) res.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const handler: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString();
        const rec: Recorded = { operation: operationOf(req, body), at: Date.now(), headers: req.headers, body };
        requests.push(rec);
        const fault = proxy.fault?.(rec.operation, rec);
        if (fault?.kind === 'reset') {
          req.socket.destroy();
          return;
        }
        if (fault?.kind === 'hang') {
          hanging.add(res);
          res.on('close', () => hanging.delete(res));
          return;
        }
        if (fault?.kind === 'status') {
          res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
          res.end(fault.body ?? '');
          return;
        }
        if (fault?.kind === 'malformed') {
          res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
          res.end('{"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x", "Versi');
          return;
        }
        try {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(req.headers)) {
            if (typeof v === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)) headers[k] = v;
          }
          const up = await fetch(upstream + (req.url ?? '/'), { method: req.method ?? 'POST', headers, body: body || undefined });
          let text = await up.text();
          if (proxy.transform && up.ok && text.startsWith('{')) {
            text = JSON.stringify(proxy.transform(rec.operation, JSON.parse(text) as Record<string, unknown>));
          }
          const out: Record<string, string> = {};
          up.headers.forEach((v, k) => {
            if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(k)) out[k] = v;
          });
          res.writeHead(up.status, out);
          res.end(text);
        } catch {
          res.writeHead(502);
          res.end();
        }
      })();
    });
  };
  const server = options.tls ? createTlsServer(options.tls, handler) : createServer(handler);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  (proxy as { url: string }).url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return proxy;
}
