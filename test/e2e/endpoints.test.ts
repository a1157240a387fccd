// Endpoints users configure, end to end: the real CLI against moto.
//
// - AWS_ENDPOINT_URL_STS / _SECRETS_MANAGER / _SSM (VPC interface endpoints):
//   each service pointed at its own recording proxy (test/support/proxy.ts) in
//   front of moto; each must get its own calls and only those.
// - AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT: no AWS here, so the
//   agent goes through a forward proxy (test/support/forward-proxy.ts) whose
//   CONNECT targets show the host names the SDK chose (the tunnels are refused:
//   init fails, as intended); with an endpoint URL set, FIPS is refused by the SDK.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent } from '../support/cli.ts';
import { startForwardProxy, type ForwardProxy } from '../support/forward-proxy.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { startProxy, type Proxy } from '../support/proxy.ts';

const CANARY = 'CANARY-endpoints-3f9b';

describe('endpoints: service-specific endpoint URLs, FIPS, dual-stack', () => {
  let moto: Moto;
  let root: string;
  let config: string;
  let out: string;
  const recorders: Proxy[] = [];
  const forwards: ForwardProxy[] = [];

  before(async () => {
    moto = await startMoto();
    root = await mkdtemp(join(tmpdir(), 'sa-e2e-endpoints-'));
    await writeFile(join(root, 'token'), 'projected-token');
    await moto.sm('CreateSecret', { Name: 'ep/db', SecretString: `sm-${CANARY}` });
await moto.ssm('PutParameter', { Name: '/ep/token', Value: `ssm-${CANARY}`, Type: 'String' });
    out = join(root, 'out');
    await mkdir(out, { recursive: true });
    config = join(root, 'config.yaml');
    await writeFile(
      config,
      `source: { region: us-east-1 }
outputDir: ${out}
secrets:
  db:    { id: ep/db }
  token: { parameter: /ep/token }
files:
  - { path: db, secret: db }
  - { path: token, secret: token }
`,
    );
  });

  after(async () => {
    for (const p of [...recorders, ...forwards]) await p.close();
    await moto?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  function env(extra: Record<string, string>): NodeJS.ProcessEnv {
    const e = agentEnv(moto, join(root, 'token'));
    for (const k of ['AWS_ENDPOINT_URL', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT']) delete e[k];
    return { ...e, ...extra };
  }

  it('when AWS_ENDPOINT_URL_STS, _SECRETS_MANAGER and _SSM name three endpoints, each gets its own calls and only those', async () => {
    const [sts, sm, ssm] = await Promise.all([startProxy(moto.url), startProxy(moto.url), startProxy(moto.url)]);
    recorders.push(sts, sm, ssm);
    const r = await runAgent(['init', '--config', config], {
      env: env({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_ENDPOINT_URL_STS: sts.url, AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.url, AWS_ENDPOINT_URL_SSM: ssm.url }),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(out, 'db'), 'utf8'), `sm-${CANARY}`);
    assert.equal(await readFile(join(out, 'token'), 'utf8'), `ssm-${CANARY}`);
    const ops = (p: Proxy): string[] => [...new Set(p.requests.map((q) => q.operation))].sort();
    assert.deepEqual(ops(sts), ['AssumeRoleWithWebIdentity']);
    assert.ok(ops(sm).length > 0 && ops(sm).every((o) => /Secret/.test(o)), ops(sm).join(' '));
    assert.deepEqual(ops(ssm), ['GetParameters']);
    // The service-specific variables win over AWS_ENDPOINT_URL (a dead port here), as the identity line says.
    assert.match(r.stdout + r.stderr, new RegExp(`"endpoint":"${sm.url}","ssmEndpoint":"${ssm.url}"`));
  });

  async function hostsChosen(extra: Record<string, string>): Promise<{ targets: string[]; stderr: string }> {
    // Every AWS host name maps to a closed port: the tunnel is refused at once, nothing leaves the machine.
    const names = [
      'sts.us-east-1.amazonaws.com',
      'sts-fips.us-east-1.amazonaws.com',
      'sts.us-east-1.api.aws',
      'sts-fips.us-east-1.api.aws',
      'secretsmanager.us-east-1.amazonaws.com',
      'secretsmanager-fips.us-east-1.amazonaws.com',
      'ssm.us-east-1.amazonaws.com',
      'ssm-fips.us-east-1.amazonaws.com',
      'ssm.us-east-1.api.aws',
      'ssm-fips.us-east-1.api.aws',
    ];
    const proxy = await startForwardProxy({ hosts: Object.fromEntries(names.map((n) => [n, '127.0.0.9'])) });
    forwards.push(proxy);
    const r = await runAgent(['init', '--config', config, '--timeout', '3s'], { env: env({ HTTPS_PROXY: proxy.url, ...extra }) });
    assert.equal(r.code, 1, 'no AWS here: init must fail');
    return { targets: [...new Set(proxy.requests.map((q) => q.target))].sort(), stderr: r.stderr };
  }

  it('when AWS_USE_FIPS_ENDPOINT=true, STS, Secrets Manager and SSM are called at their -fips endpoints', async () => {
    const { targets } = await hostsChosen({ AWS_USE_FIPS_ENDPOINT: 'true' });
    assert.ok(targets.includes('sts-fips.us-east-1.amazonaws.com:443'), targets.join(' '));
    // With no credentials (STS refused), the service calls are never made: check the services with keys instead.
    const withKeys = await hostsChosen({ AWS_USE_FIPS_ENDPOINT: 'true', AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'test', AWS_ROLE_ARN: '' });
    assert.deepEqual(withKeys.targets, ['secretsmanager-fips.us-east-1.amazonaws.com:443', 'ssm-fips.us-east-1.amazonaws.com:443']);
  });

  it('when AWS_USE_DUALSTACK_ENDPOINT=true, STS and SSM use their dual-stack (api.aws) names; Secrets Manager keeps its own name (its endpoints are dual-stack already)', async () => {
    const { targets } = await hostsChosen({ AWS_USE_DUALSTACK_ENDPOINT: 'true' });
    assert.ok(targets.includes('sts.us-east-1.api.aws:443'), targets.join(' '));
    const withKeys = await hostsChosen({ AWS_USE_DUALSTACK_ENDPOINT: 'true', AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'test', AWS_ROLE_ARN: '' });
    assert.deepEqual(withKeys.targets, ['secretsmanager.us-east-1.amazonaws.com:443', 'ssm.us-east-1.api.aws:443']);
  });

  it('when AWS_USE_FIPS_ENDPOINT=true and an endpoint URL is set, init fails with the SDK\'s configuration error', async () => {
    const r = await runAgent(['init', '--config', config, '--timeout', '5s'], { env: env({ AWS_USE_FIPS_ENDPOINT: 'true', AWS_ENDPOINT_URL: moto.url }) });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /FIPS and custom endpoint are not supported/);
  });
});
