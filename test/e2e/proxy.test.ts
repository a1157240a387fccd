// Egress proxies, end to end: the real CLI against moto through a real forward
// proxy process (test/support/forward-proxy.ts: CONNECT tunnels for https,
// absolute-form for http), counting what passes through it by target host.
//
// The AWS endpoints are names only the proxy resolves (sts.test, sm.test,
// ssm.test, moto.test → 127.0.0.1): a request that reached moto through such a
// name went through the proxy, the agent could not have resolved it. Direct
// paths (NO_PROXY, loopback) use names the machine resolves itself.
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { startForwardProxy, type ForwardProxy } from '../support/forward-proxy.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { stopAll } from '../support/procs.ts';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { selfSignedCert, type TestCert } from '../support/tls.ts';
import { waitUntil } from '../support/wait.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';

const CANARY = 'CANARY-proxy-51d0a7';
const PROXY_USER = 'agent';
const PROXY_PASSWORD = 'pr0xy-PW@CANARY';

describe('egress proxy: HTTPS_PROXY / HTTP_PROXY / NO_PROXY against moto', () => {
  let moto: Moto;
  let root: string;
  let cert: TestCert;
  let tlsMoto: Proxy;
  /** A name this machine resolves to 127.0.0.1 that is not loopback by name (not `localhost`, not an IP). */
  let direct: string;
  const proxies: ForwardProxy[] = [];
  const agents: RunningAgent[] = [];

  before(async () => {
    ({ moto, root } = await openWorkspace('sa-e2e-proxy-'));
    cert = await selfSignedCert(root, ['moto.test']);
    tlsMoto = await startProxy(moto.url, { tls: cert });
    direct = hostname();
    const addrs = await lookup(direct, { all: true });
    assert.ok(
      addrs.some((a) => a.address === '127.0.0.1'),
      `the NO_PROXY tests need the host name ${direct} to resolve to 127.0.0.1 (it resolves to ${addrs.map((a) => a.address).join(', ')}); add it to /etc/hosts`,
    );
    await moto.sm('CreateSecret', { Name: 'px/db', SecretString: JSON.stringify({ password: `sm-${CANARY}` }) });
    await moto.ssm('PutParameter', { Name: '/px/token', Value: `ssm-${CANARY}`, Type: 'SecureString', Overwrite: true });
  });

  after(() => closeWorkspace({ moto, root }, agents, [...proxies, tlsMoto]));

  async function forwardProxy(options: Parameters<typeof startForwardProxy>[0] = {}): Promise<ForwardProxy> {
    const p = await startForwardProxy({ hosts: { 'sts.test': '127.0.0.1', 'sm.test': '127.0.0.1', 'ssm.test': '127.0.0.1', 'moto.test': '127.0.0.1' }, ...options });
    proxies.push(p);
    return p;
  }

  function configIn(name: string, interval = '1h'): Promise<{ config: string; out: string }> {
    return writeCase(
      root,
      name,
      (out) => `source: { region: us-east-1 }
outputDir: ${out}
refresh: { interval: ${interval}, jitter: 0.1 }
secrets:
  db:    { id: px/db }
  token: { parameter: /px/token }
files:
  - { path: db, secret: db, key: password }
  - { path: token, secret: token }
`,
    );
  }

  /** The agent's environment: web identity, no AWS_ENDPOINT_URL unless given, no proxy variables from the host. */
  function env(extra: Record<string, string>): NodeJS.ProcessEnv {
    const e = agentEnv(moto, join(root, 'token'));
    for (const k of ['AWS_ENDPOINT_URL', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'NODE_USE_ENV_PROXY', 'NODE_EXTRA_CA_CERTS']) delete e[k];
    return { ...e, ...extra };
  }

  async function assertFiles(out: string): Promise<void> {
    assert.equal(await readFile(join(out, 'db'), 'utf8'), `sm-${CANARY}`);
    assert.equal(await readFile(join(out, 'token'), 'utf8'), `ssm-${CANARY}`);
  }

  it('when HTTP_PROXY is set, every STS, Secrets Manager and SSM request of init and of run goes through the proxy (absolute-form)', async () => {
    const proxy = await forwardProxy();
    const p = moto.port;
    const e = env({
      HTTP_PROXY: proxy.url,
      AWS_ENDPOINT_URL_STS: `http://sts.test:${p}`,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://sm.test:${p}`,
      AWS_ENDPOINT_URL_SSM: `http://ssm.test:${p}`,
    });
    const { config, out } = await configIn('http');
    const r = await runAgent(['init', '--config', config], { env: e });
    assert.equal(r.code, 0, r.stderr);
    await assertFiles(out);
    assert.ok(proxy.count('sts.test', 'POST') >= 1, 'STS through the proxy');
    assert.ok(proxy.count('sm.test', 'POST') >= 1, 'Secrets Manager through the proxy');
    assert.ok(proxy.count('ssm.test', 'POST') >= 1, 'SSM through the proxy');
    assert.equal(proxy.requests.filter((q) => q.method === 'CONNECT').length, 0, 'plain http is absolute-form, no tunnel');
    assert.match(r.stdout + r.stderr, new RegExp(`"httpProxy":"${proxy.url}"`), 'the identity line names the proxy');

    // run: the first load and then each check (DescribeSecret, GetParameters) pass through it too.
    const { config: runConfig, out: runOut } = await configIn('http-run', '1s');
    const sm0 = proxy.count('sm.test');
    const ssm0 = proxy.count('ssm.test');
    const agent = startAgent(['run', '--config', runConfig], { env: e });
    agents.push(agent);
    await waitUntil('run through the proxy: first load and 3 checks per service', () => proxy.count('sm.test') >= sm0 + 4 && proxy.count('ssm.test') >= ssm0 + 4, 30_000);
    await assertFiles(runOut);
    assert.doesNotMatch(agent.output().stdout + agent.output().stderr, /"level":"error"|"level":50/);
    await stopAll([agent]);
  });

  it('when HTTPS_PROXY needs basic auth and the endpoint is https with a private CA (NODE_EXTRA_CA_CERTS), init tunnels with CONNECT and never logs the proxy password', async () => {
    const proxy = await forwardProxy({ auth: `${PROXY_USER}:${PROXY_PASSWORD}` });
    const proxyUrl = `http://${PROXY_USER}:${encodeURIComponent(PROXY_PASSWORD)}@127.0.0.1:${proxy.port}`;
    const since = tlsMoto.requests.length;
    const { config, out } = await configIn('https');
    const e = env({ HTTPS_PROXY: proxyUrl, AWS_ENDPOINT_URL: `https://moto.test:${new URL(tlsMoto.url).port}`, NODE_EXTRA_CA_CERTS: cert.caFile });
    const r = await runAgent(['init', '--config', config], { env: e });
    assert.equal(r.code, 0, r.stderr);
    await assertFiles(out);
    assert.ok(proxy.count('moto.test', 'CONNECT') >= 1, 'a CONNECT tunnel to moto.test with the right Proxy-Authorization');
    assert.equal(proxy.requests.filter((q) => q.method !== 'CONNECT').length, 0);
    // What came out of the tunnel: every AWS call of init (moto.test resolves nowhere but at the proxy).
    const ops = tlsMoto.requests.slice(since).map((q) => q.operation);
    assert.ok(ops.includes('AssumeRoleWithWebIdentity'), ops.join(' '));
    assert.ok(ops.some((o) => o === 'GetSecretValue' || o === 'BatchGetSecretValue'), ops.join(' '));
    assert.ok(ops.includes('GetParameters'), ops.join(' '));
    const logs = r.stdout + r.stderr;
    assert.match(logs, new RegExp(`"proxy":"http://127.0.0.1:${proxy.port}"`));
    assert.ok(!logs.includes('pr0xy') && !logs.includes(encodeURIComponent(PROXY_PASSWORD)), 'the proxy password is never logged');
  });

  it('when the endpoint CA is not trusted (no NODE_EXTRA_CA_CERTS), init through the proxy fails with a certificate error that says what to do', async () => {
    const proxy = await forwardProxy();
    const { config } = await configIn('untrusted');
    const e = env({ HTTPS_PROXY: proxy.url, AWS_ENDPOINT_URL: `https://moto.test:${new URL(tlsMoto.url).port}` });
    const r = await runAgent(['init', '--config', config, '--timeout', '10s'], { env: e });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /certificate/i);
    assert.match(r.stderr, /NODE_EXTRA_CA_CERTS/);
  });

  it('when NO_PROXY names a host (upper case), that endpoint is reached directly and the others still through the proxy', async () => {
    const proxy = await forwardProxy();
    const p = moto.port;
    const { config, out } = await configIn('noproxy-list');
    const e = env({
      HTTP_PROXY: proxy.url,
      NO_PROXY: `example.com, ${direct}`,
      AWS_ENDPOINT_URL_STS: `http://sts.test:${p}`,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://${direct}:${p}`,
      AWS_ENDPOINT_URL_SSM: `http://ssm.test:${p}`,
    });
    const r = await runAgent(['init', '--config', config], { env: e });
    assert.equal(r.code, 0, r.stderr);
    await assertFiles(out);
    assert.equal(proxy.count(direct), 0, 'the NO_PROXY host is reached directly');
    assert.ok(proxy.count('sts.test') >= 1 && proxy.count('ssm.test') >= 1, 'the other endpoints through the proxy');
  });

  it('when no_proxy is * (lower case), nothing goes through the proxy; loopback endpoints never do, whatever NO_PROXY says', async () => {
    const proxy = await forwardProxy();
    const star = await configIn('noproxy-star');
    const r1 = await runAgent(['init', '--config', star.config], {
      env: env({ http_proxy: proxy.url, https_proxy: proxy.url, no_proxy: '*', AWS_ENDPOINT_URL: `http://${direct}:${moto.port}` }),
    });
    assert.equal(r1.code, 0, r1.stderr);
    await assertFiles(star.out);
    const loop = await configIn('loopback');
    // Also with NODE_USE_ENV_PROXY=1 (Node's global agent honours the proxy then; ours decide the same way).
    const r2 = await runAgent(['init', '--config', loop.config], {
      env: env({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NODE_USE_ENV_PROXY: '1', AWS_ENDPOINT_URL: moto.url }),
    });
    assert.equal(r2.code, 0, r2.stderr);
    await assertFiles(loop.out);
    assert.equal(proxy.requests.length, 0, proxy.requests.map((q) => `${q.method} ${q.target}`).join(', '));
  });

  it('when HTTPS_PROXY is not a proxy URL, init and run exit 2 with one plain line naming the variable and the fix, never its password', async () => {
    const { config, out } = await configIn('bad-url');
    for (const [value, why] of [
      ['ftp://agent:pr0xy-PW@proxy:21', 'its scheme is "ftp", not http or https'],
      ['http://agent:pr0xy-PW@pro xy:3128', 'it is not a URL'],
    ] as const) {
      for (const command of ['init', 'run']) {
        const r = await runAgent([command, '--config', config, '--log-format', 'text'], { env: env({ HTTPS_PROXY: value }), timeoutMs: 30_000 });
        assert.equal(r.code, 2, `${command} ${value}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`the environment variable HTTPS_PROXY \\(".*"\\) is not a proxy URL: ${why.replace(/[()"]/g, '.')}; set it to http://HOST:PORT`));
        assert.ok(!r.stderr.includes('pr0xy-PW') && !r.stdout.includes('pr0xy-PW'), 'the password is never shown');
        assert.ok(!/reading the environment/.test(r.stderr));
      }
    }
    await assert.rejects(readFile(join(out, 'db')), 'nothing written');
  });

  it('when the proxy accepts connections and never answers, init exits 1 within its deadline with an error naming the proxy and the timeout', async () => {
    const proxy = await forwardProxy({ hang: true });
    const { config, out } = await configIn('hang');
    const e = env({ HTTPS_PROXY: proxy.url, AWS_ENDPOINT_URL: 'https://moto.test:443' });
    const start = Date.now();
    const r = await runAgent(['init', '--config', config, '--timeout', '20s'], { env: e, timeoutMs: 110_000 });
    const took = Date.now() - start;
    assert.equal(r.code, 1, r.stderr);
    assert.ok(took < 60_000, `failed after ${took} ms: the request and credential deadlines hold through the proxy`);
    assert.match(r.stderr, /timed out|TimeoutError/i);
    assert.match(r.stderr, new RegExp(`proxy http://127\\.0\\.0\\.1:${proxy.port}`));
    await assert.rejects(readFile(join(out, 'db')), 'no file written');
  });
});
