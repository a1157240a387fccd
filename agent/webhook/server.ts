// The webhook's servers: HTTPS for the API server (POST /mutate), and plain
// HTTP for the kubelet and Prometheus (/healthz, /readyz, /metrics).
//
// Contract:
// - HTTPS, HTTP/1.1 only (node:https offers no h2 in ALPN; the API server's
//   client then speaks HTTP/1.1 with keep-alive; docs/webhook.md, Serving).
//   The certificate and key are read again every `reloadMs` and swapped in
//   (setSecureContext) when either changed and the pair loads: new connections
//   get the new pair, open ones keep theirs, and a half-written pair (the
//   certificate new, the key not yet) keeps the old one until both agree.
// - POST /mutate only (404 elsewhere, 405 another method, 415 a body that is
//   not application/json, 413 a body over `maxBodyBytes`, its rest discarded, the
//   connection closed after at most 1 s); the
//   body goes to webhook.ts's review(), whose status and JSON are sent as is.
//   Nothing thrown reaches the caller: an unexpected error is logged with an id
//   and answered 500 "internal error (id)", never a stack trace.
// - Metrics: secrets_agent_webhook_admissions_total{result} and
//   secrets_agent_webhook_review_duration_seconds (histogram), on their own
//   registry; /healthz 200 while the process serves, /readyz 200 until
//   shutdown starts.
// - close(): /readyz turns 503, and after `shutdownDelayMs` (endpoints catch
//   up) the HTTPS server stops accepting; reviews in flight finish (up to
//   `graceMs`, then their sockets are cut), idle keep-alive sockets close.
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import { randomUUID } from 'node:crypto';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SetupError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import { parseListen } from '../observe/server.ts';
import { REVIEW_RESULTS, review, type ReviewOptions, type ReviewResultName } from './webhook.ts';

export interface WebhookServerOptions extends ReviewOptions {
  /** HTTPS "host:port" for the API server. */
  listen: string;
  /** HTTP "host:port" for /healthz, /readyz, /metrics. */
  metricsListen: string;
  certFile: string;
  keyFile: string;
  log: Logger;
  /** @default 3 MiB */
  maxBodyBytes?: number;
  /** How often the certificate files are read again. @default 1000 */
  reloadMs?: number;
  /** close(): how long /readyz says 503 before the listener stops. @default 5000 */
  shutdownDelayMs?: number;
  /** close(): how long reviews in flight may take before their sockets are cut. @default 10000 */
  graceMs?: number;
}

export interface WebhookServer {
  readonly address: { host: string; port: number };
  readonly metricsAddress: { host: string; port: number };
  close(): Promise<void>;
}

/** What the API server can send: an object of at most 3 MiB (its own request limit), plus the review around it. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024;
const JSON_TYPE = 'application/json';
const TEXT = 'text/plain; charset=utf-8';

async function readPair(certFile: string, keyFile: string): Promise<{ cert: string; key: string }> {
  const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  return { cert, key };
}

function listenError(flag: string, value: string, err: NodeJS.ErrnoException): SetupError {
  const why = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : (err.code ?? err.message);
  return new SetupError(flag, `cannot listen on ${flag} "${value}": ${why}; give a free "host:port" (e.g. "0.0.0.0:8443")`, err.code, { cause: err });
}

async function listenOn(server: Server, flag: string, value: string): Promise<{ host: string; port: number }> {
  let bind;
  try {
    bind = parseListen(value);
  } catch {
    throw new SetupError(flag, `${flag} "${value}" is not "host:port" (e.g. "0.0.0.0:8443", "127.0.0.1:0", "[::]:8443")`);
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(listenError(flag, value, err));
    server.once('error', onError);
    server.listen(bind.port, bind.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return { host: addr.address, port: addr.port };
}

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const { log, certFile, keyFile } = options;
  const maxBody = options.maxBodyBytes ?? MAX_BODY_BYTES;

  let pair: { cert: string; key: string };
  try {
    pair = await readPair(certFile, keyFile);
    createSecureContext(pair);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SetupError('--tls-cert-file', `cannot load the TLS certificate --tls-cert-file "${certFile}" and key --tls-private-key-file "${keyFile}": ${code ?? (err as Error).message}; give a PEM certificate and its private key (cert-manager's tls.crt and tls.key)`, code, { cause: err });
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const admissions = new Counter({
    name: 'secrets_agent_webhook_admissions_total',
    help: 'Admission reviews answered, by result: mutated (agent added), skipped (not opted in, or already has the agent), denied (a bad annotation or a pod the agent cannot serve), invalid (a malformed review: HTTP 4xx), error (a bug: HTTP 500).',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const r of REVIEW_RESULTS) admissions.inc({ result: r }, 0);
  const duration = new Histogram({
    name: 'secrets_agent_webhook_review_duration_seconds',
    help: 'Time from the request to the answer, per admission review (reading the body included).',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });

  const send = (res: ServerResponse, status: number, body: string, type = TEXT): void => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  };

  const mutate = (req: IncomingMessage, res: ServerResponse): void => {
    const stop = duration.startTimer();
    const done = (result: ReviewResultName, status: number, body: string, type = TEXT): void => {
      admissions.inc({ result });
      stop();
      // Shutting down: this answer is the connection's last, so no keep-alive socket outlives the review.
      if (draining) res.setHeader('connection', 'close');
      send(res, status, body, type);
    };
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/mutate') return done('invalid', 404, 'not found: the admission endpoint is POST /mutate\n');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return done('invalid', 405, 'method not allowed: POST an AdmissionReview\n');
    }
    const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (type !== JSON_TYPE) return done('invalid', 415, `unsupported media type "${type}": POST the AdmissionReview as ${JSON_TYPE}\n`);
    const declared = Number(req.headers['content-length']);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const answerTooBig = (): void => done('invalid', 413, `request body over ${maxBody} bytes: not an AdmissionReview the API server sends\n`);
    // Over the bound: nothing more is kept; the rest is read and dropped, and the 413 sent once it is all in (a client
    // still writing when the answer comes would see a reset instead). One that keeps sending is answered and cut after 1 s.
    const tooBig = (): void => {
      over = true;
      chunks.length = 0;
      const cut = setTimeout(() => {
        if (res.headersSent) return void req.socket.destroy();
        res.setHeader('connection', 'close');
        res.once('finish', () => req.socket.destroy());
        answerTooBig();
      }, 1000);
      cut.unref();
      req.once('end', () => {
        clearTimeout(cut);
        if (!res.headersSent) answerTooBig();
      });
      req.resume();
    };
    if (Number.isFinite(declared) && declared > maxBody) return tooBig();
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > maxBody) {
        tooBig();
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => {
      if (!res.headersSent) stop();
    });
    req.on('end', () => {
      if (over) return;
      try {
        const r = review(Buffer.concat(chunks).toString('utf8'), options);
        if (r.log) log[r.result === 'error' ? 'error' : 'info'](r.log, r.result === 'mutated' ? 'agent injected' : r.result === 'skipped' ? 'pod left alone' : r.result === 'denied' ? 'pod denied' : 'malformed admission review');
        done(r.result, r.status, r.body, r.status === 200 ? JSON_TYPE : TEXT);
      } catch (err) {
        const id = randomUUID();
        log.error({ id, err: { name: (err as Error).name, message: (err as Error).message, stack: (err as Error).stack } }, 'admission review failed');
        done('error', 500, `internal error (${id}); the webhook's log has the details\n`);
      }
    });
  };

  const https = createHttpsServer({ ...pair, minVersion: 'TLSv1.2' }, mutate);
  // The API server waits at most timeoutSeconds (10 s by default) for an answer: a slow client gets less.
  https.headersTimeout = 10_000;
  https.requestTimeout = 30_000;
  https.keepAliveTimeout = 65_000;
  https.on('tlsClientError', (err) => log.debug({ err: { message: err.message } }, 'TLS handshake failed'));

  let reloading = false;
  const reload = async (): Promise<void> => {
    if (reloading) return;
    reloading = true;
    try {
      const next = await readPair(certFile, keyFile);
      if (next.cert === pair.cert && next.key === pair.key) return;
      try {
        https.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
      } catch (err) {
        // Mid-rotation (one file new, the other not yet) or a broken pair: keep serving the old one.
        log.warn({ certFile, keyFile, err: { message: (err as Error).message } }, 'the TLS certificate files changed but do not load as a pair; still serving the previous certificate');
        return;
      }
      pair = next;
      log.info({ certFile, keyFile }, 'TLS certificate reloaded');
    } catch (err) {
      log.warn({ certFile, keyFile, code: (err as NodeJS.ErrnoException).code }, 'cannot read the TLS certificate files; still serving the previous certificate');
    } finally {
      reloading = false;
    }
  };
  const reloader = setInterval(() => void reload(), options.reloadMs ?? 1000);
  reloader.unref();

  let closing = false;
  let draining = false;
  const plain = createHttpServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'method not allowed\n');
    }
    if (path === '/healthz') return send(res, 200, 'ok\n');
    if (path === '/readyz') return closing ? send(res, 503, 'not ready: shutting down\n') : send(res, 200, 'ok\n');
    if (path !== '/metrics') return send(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
    registry.metrics().then(
      (body) => send(res, 200, body, registry.contentType),
      (err: unknown) => {
        log.error({ err: { message: (err as Error).message } }, 'collecting metrics failed');
        send(res, 500, 'collecting metrics failed\n');
      },
    );
  });
  plain.headersTimeout = 10_000;
  plain.requestTimeout = 30_000;

  const address = await listenOn(https, '--listen', options.listen);
  let metricsAddress;
  try {
    metricsAddress = await listenOn(plain, '--metrics-listen', options.metricsListen);
  } catch (err) {
    https.close();
    clearInterval(reloader);
    throw err;
  }
  const show = (a: { host: string; port: number }): string => `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  log.info({ address: show(address), metricsAddress: show(metricsAddress) }, 'serving admission reviews on POST /mutate (HTTPS), /metrics, /healthz, /readyz (HTTP)');

  let closed: Promise<void> | undefined;
  return {
    address,
    metricsAddress,
    close() {
      closed ??= (async () => {
        closing = true;
        await new Promise((r) => setTimeout(r, options.shutdownDelayMs ?? 5000));
        clearInterval(reloader);
        draining = true;
        await new Promise<void>((resolve) => {
          https.close(() => resolve());
          https.closeIdleConnections();
          const force = setTimeout(() => https.closeAllConnections(), options.graceMs ?? 10_000);
          force.unref();
          https.once('close', () => clearTimeout(force));
        });
        await new Promise<void>((resolve) => {
          plain.close(() => resolve());
          plain.closeAllConnections();
        });
      })();
      return closed;
    },
  };
}
