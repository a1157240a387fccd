// A real AWS endpoint for tests: moto's server on 127.0.0.1 and a free port.
// Nothing is mocked: the agent and the SDK speak the real wire protocol to it.
// In CI a missing moto is a failure (never a silent skip): start() throws.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { stopProcess } from './procs.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const MOTO_ACCOUNT = '123456789012';
export const TEST_ROLE_ARN = `arn:aws:iam::${MOTO_ACCOUNT}:role/secrets-agent-test`;

export interface Moto {
  readonly url: string;
  readonly port: number;
  /** Call any Secrets Manager operation (awsJson1_1) directly, bypassing the agent. */
  sm<T = Record<string, unknown>>(operation: string, body: Record<string, unknown>): Promise<T>;
  /** Call any SSM (Parameter Store) operation directly, bypassing the agent. */
  ssm<T = Record<string, unknown>>(operation: string, body: Record<string, unknown>): Promise<T>;
  /** Call an operation of either service in a region (moto keeps each region's state apart; default us-east-1). */
  call<T = Record<string, unknown>>(service: 'secretsmanager' | 'ssm', operation: string, body: Record<string, unknown>, region?: string): Promise<T>;
  reset(): Promise<void>;
  stop(): Promise<void>;
  /** Stop and start again on the same port (state is lost). */
  restart(): Promise<void>;
}

function launch(port: number): ChildProcess {
  const child = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MOTO_ACCOUNT_ID: MOTO_ACCOUNT },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  child.on('exit', (code) => {
    if (code && code !== 0 && !child.killed) process.stderr.write(`moto exited with ${code}: ${stderr}\n`);
  });
  return child;
}

async function waitUp(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`moto server exited (code ${child.exitCode}); install it with: pip install 'moto[server]'`);
    }
    try {
      const res = await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(1000) });
      if (res.status < 500) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error('moto server did not start within 20 s');
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child = launch(port);
  await waitUp(url, child);
  // SIGTERM, 3 s, then SIGKILL; returns when moto (and anything it started) is gone.
  const stopChild = async (): Promise<void> => {
    await stopProcess(child, { graceMs: 3000 });
  };
  const moto: Moto = {
    url,
    port,
    async call<T>(service: 'secretsmanager' | 'ssm', operation: string, body: Record<string, unknown>, region = 'us-east-1'): Promise<T> {
      // A test's own set-up call. moto answers an HTML 500 now and then when many
      // requests reach it at once (its in-memory store is not thread-safe): that
      // is moto, not the agent, so set-up retries it twice before failing.
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-amz-json-1.1',
            'x-amz-target': `${service === 'ssm' ? 'AmazonSSM' : 'secretsmanager'}.${operation}`,
            // moto checks no signature, but routes by the credential scope's service and region.
            authorization: `AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/${region}/${service}/aws4_request, SignedHeaders=host, Signature=0`,
          },
          body: JSON.stringify(body),
        });
        const text = await res.text();
        if (res.status === 500 && attempt < 3 && text.includes('Internal Server Error')) {
          await new Promise((r) => setTimeout(r, 100 * attempt));
          continue;
        }
        if (!res.ok) throw new Error(`moto ${operation}${region === 'us-east-1' ? '' : ` in ${region}`} failed: ${res.status} ${text}`);
        return (text ? JSON.parse(text) : {}) as T;
      }
    },
    sm<T>(operation: string, body: Record<string, unknown>): Promise<T> {
      return moto.call<T>('secretsmanager', operation, body);
    },
    ssm<T>(operation: string, body: Record<string, unknown>): Promise<T> {
      return moto.call<T>('ssm', operation, body);
    },
    async reset() {
      await fetch(`${url}/moto-api/reset`, { method: 'POST' });
    },
    stop: stopChild,
    async restart() {
      await stopChild();
      child = launch(port);
      await waitUp(url, child);
    },
  };
  return moto;
}

/** Environment for a child agent process: web identity against moto, nothing from the host's AWS config. */
export function agentEnv(moto: Moto, tokenFile: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && k !== 'NODE_OPTIONS' && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  }
  return {
    ...env,
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: moto.url,
    AWS_ROLE_ARN: TEST_ROLE_ARN,
    AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
    AWS_ROLE_SESSION_NAME: 'secrets-agent-test',
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...extra,
  };
}
