// A stand-in for EC2 instance metadata (IMDSv2), the node's role: PUT
// /latest/api/token hands out a session token; with it, GET
// /latest/meta-data/iam/security-credentials/ names the role and
// .../<role> serves its credentials. Point an agent at it with
// AWS_EC2_METADATA_SERVICE_ENDPOINT. Every request is recorded, so a test can
// prove the agent never asked it (the default) or did (source.allowNodeRole).
import { createServer } from 'node:http';
import type { Socket } from 'node:net';

export const IMDS_ROLE = 'eks-node-instance-role';
export const IMDS_ACCESS_KEY = 'ASIANODEROLEFAKE0001';

export interface FakeImds {
  readonly url: string;
  readonly requests: { readonly method: string; readonly path: string; readonly token: string | undefined }[];
  /** Credential fetches (GET of the role's credentials with a valid session token). */
  credentialFetches(): number;
  close(): Promise<void>;
}

export async function startFakeImds(): Promise<FakeImds> {
  const requests: FakeImds['requests'][number][] = [];
  const session = 'imds-session-token-v2';
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    const token = req.headers['x-aws-ec2-metadata-token'] as string | undefined;
    requests.push({ method: req.method ?? 'GET', path, token });
    if (req.method === 'PUT' && path === '/latest/api/token') {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-aws-ec2-metadata-token-ttl-seconds': '21600' });
      res.end(session);
      return;
    }
    if (token !== session) {
      res.writeHead(401);
      res.end();
      return;
    }
    if (req.method === 'GET' && path === '/latest/meta-data/iam/security-credentials/') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(IMDS_ROLE);
      return;
    }
    if (req.method === 'GET' && path === `/latest/meta-data/iam/security-credentials/${IMDS_ROLE}`) {
      const now = new Date();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(
        JSON.stringify({
          Code: 'Success',
          LastUpdated: now.toISOString().replace(/\.\d+Z$/, 'Z'),
          Type: 'AWS-HMAC',
          AccessKeyId: IMDS_ACCESS_KEY,
          SecretAccessKey: 'node-role-secret-access-key',
          Token: 'node-role-session-token',
          Expiration: new Date(now.getTime() + 6 * 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        }),
      );
      return;
    }
    res.writeHead(404);
    res.end();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    credentialFetches: () => requests.filter((r) => r.path === `/latest/meta-data/iam/security-credentials/${IMDS_ROLE}` && r.token === session).length,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
