// Credential endpoints for the chaos suites.
//
// - An STS front: the agent's STS endpoint (AWS_ENDPOINT_URL_STS) is this
//   recording, fault-injecting HTTP server, which forwards to moto's real STS.
//   It can shorten the Expiration in moto's XML answer so the SDK refreshes
//   credentials within seconds (it refreshes 5 min before Expiration) instead
//   of after moto's 1 h, answer with STS Query-protocol XML errors
//   (InvalidIdentityToken, IDPCommunicationError), hang, or reset. Moto
//   accepts any web identity token, even an empty one; real STS rejects a
//   token shorter than 4 characters with a ValidationError, and so does this
//   front (`realTokenRules`), the one STS rule it imitates.
// - A Pod Identity endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI): the EKS Pod
//   Identity agent cannot run here, so this is a stand-in that serves the same
//   JSON on loopback and can hang, fail, or check the Authorization header.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Fault } from './proxy.ts';

export interface StsRequest {
  readonly at: number;
  readonly action: string;
  /** The WebIdentityToken parameter, decoded (AssumeRoleWithWebIdentity only). */
  readonly token: string | undefined;
}

export interface StsFront {
  readonly url: string;
  readonly requests: StsRequest[];
  /** Answer instead of moto (undefined: forward). */
  fault: ((req: StsRequest) => Fault | undefined) | undefined;
  /** Rewrite Credentials/Expiration to now + this many seconds (undefined: moto's own, 1 h). */
  expiresInSec: number | undefined;
  /** Reject tokens shorter than 4 characters as real STS does. @default true */
  realTokenRules: boolean;
  count(action: string, since?: number): number;
  close(): Promise<void>;
}

/** An STS Query-protocol error answer, as STS sends it. */
export function stsError(code: string, message: string, status = 400): Fault {
  const body =
    `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code>` +
    `<Message>${message}</Message></Error><RequestId>c0ffee00-0000-4000-8000-000000000000</RequestId></ErrorResponse>`;
  return { kind: 'status', status, body, headers: { 'content-type': 'text/xml' } };
}

interface Tracked {
  readonly sockets: Set<Socket>;
  readonly hanging: Set<ServerResponse>;
}

function track(server: Server): Tracked {
  const t: Tracked = { sockets: new Set(), hanging: new Set() };
  server.on('connection', (s: Socket) => {
    t.sockets.add(s);
    s.on('close', () => t.sockets.delete(s));
  });
  return t;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

async function shut(server: Server, t: Tracked): Promise<void> {
  for (const res of t.hanging) res.destroy();
  for (const s of t.sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
  });
}

/** Applies a fault to a response; true when it answered. */
function answerFault(fault: Fault | undefined, req: IncomingMessage, res: ServerResponse, t: Tracked): boolean {
  if (!fault) return false;
  switch (fault.kind) {
    case 'reset':
      req.socket.destroy();
      return true;
    case 'hang':
      t.hanging.add(res);
      res.on('close', () => t.hanging.delete(res));
      return true;
    case 'status':
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(fault.body ?? '');
      return true;
    case 'malformed':
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end('<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>AS');
      return true;
  }
}

export async function startStsFront(upstream: string): Promise<StsFront> {
  const requests: StsRequest[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const text = await body(req);
      const params = new URLSearchParams(text);
      const action = params.get('Action') ?? `${req.method} ${req.url}`;
      const rec: StsRequest = { at: Date.now(), action, token: params.get('WebIdentityToken') ?? undefined };
      requests.push(rec);
      if (answerFault(front.fault?.(rec), req, res, tracked)) return;
      if (front.realTokenRules && action === 'AssumeRoleWithWebIdentity' && (rec.token ?? '').length < 4) {
        answerFault(
          stsError('ValidationError', "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length greater than or equal to 4"),
          req,
          res,
          tracked,
        );
        return;
      }
      try {
        const up = await fetch(upstream + (req.url ?? '/'), {
          method: req.method ?? 'POST',
          // The signature too: moto answers a signed call (AssumeRole) by the caller's identity.
          headers: Object.fromEntries(
            Object.entries({ 'content-type': 'application/x-www-form-urlencoded', ...req.headers })
              .filter(([k, v]) => typeof v === 'string' && !['host', 'content-length', 'connection'].includes(k))
              .map(([k, v]) => [k, String(v)]),
          ),
          body: text || undefined,
        });
        let out = await up.text();
        if (front.expiresInSec !== undefined && up.ok) {
          const at = new Date(Date.now() + front.expiresInSec * 1000).toISOString();
          out = out.replace(/<Expiration>[^<]*<\/Expiration>/, `<Expiration>${at}</Expiration>`);
        }
        res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'text/xml' });
        res.end(out);
      } catch {
        res.writeHead(502);
        res.end();
      }
    })();
  });
  const tracked = track(server);
  const front: StsFront = {
    url: await listen(server),
    requests,
    fault: undefined,
    expiresInSec: undefined,
    realTokenRules: true,
    count: (action, since = 0) => requests.filter((r) => r.action === action && r.at >= since).length,
    close: () => shut(server, tracked),
  };
  return front;
}

export interface PodIdentityRequest {
  readonly at: number;
  readonly authorization: string | undefined;
}

export interface PodIdentityEndpoint {
  /** The full URI for AWS_CONTAINER_CREDENTIALS_FULL_URI. */
  readonly url: string;
  readonly requests: PodIdentityRequest[];
  /** ok: credentials; hang: never answer; error: 500. */
  mode: 'ok' | 'hang' | 'error';
  /** Expiration = now + this many seconds. @default 3600 */
  expiresInSec: number;
  /** When set, any other Authorization header gets 401 (as the Pod Identity agent does). */
  expectToken: string | undefined;
  count(since?: number): number;
  /** Requests held by `hang` whose client has not closed the connection yet. */
  hanging(): number;
  close(): Promise<void>;
}

export async function startPodIdentityEndpoint(): Promise<PodIdentityEndpoint> {
  const requests: PodIdentityRequest[] = [];
  let n = 0;
  const server = createServer((req, res) => {
    const auth = req.headers.authorization;
    requests.push({ at: Date.now(), authorization: auth });
    if (ep.mode === 'hang') {
      tracked.hanging.add(res);
      res.on('close', () => tracked.hanging.delete(res));
      return;
    }
    if (ep.mode === 'error') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"message":"internal error"}');
      return;
    }
    if (ep.expectToken !== undefined && auth !== ep.expectToken) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"message":"Service account token cannot be empty or is invalid"}');
      return;
    }
    n++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        AccessKeyId: `ASIAPODIDENTITY${String(n).padStart(5, '0')}`,
        SecretAccessKey: 'pod-identity-secret-access-key',
        Token: 'pod-identity-session-token',
        AccountId: '123456789012',
        Expiration: new Date(Date.now() + ep.expiresInSec * 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
      }),
    );
  });
  const tracked = track(server);
  const base = await listen(server);
  const ep: PodIdentityEndpoint = {
    url: `${base}/v1/credentials`,
    requests,
    mode: 'ok',
    expiresInSec: 3600,
    expectToken: undefined,
    count: (since = 0) => requests.filter((r) => r.at >= since).length,
    hanging: () => tracked.hanging.size,
    close: () => shut(server, tracked),
  };
  return ep;
}
