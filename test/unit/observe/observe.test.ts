// The metrics registry, the AWS SDK metrics plugin (against moto's real
// Secrets Manager and STS) and the /metrics, /healthz, /readyz server.
// Nothing is mocked: real SDK clients, real sockets, real promtool.
import assert from 'node:assert/strict';
import { promtool, runPromtool } from '../../support/promtool.ts';
import { request, Agent } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CreateSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { fromNodeProviderChain, fromTemporaryCredentials, fromTokenFile } from '@aws-sdk/credential-providers';
import { Gauge } from 'prom-client';
import { createLogger } from '../../../agent/observe/log.ts';
import { AgentMetrics, AWS_RESULTS, METRIC_TYPES, OUTCOMES, WRITE_RESULTS, type AwsResult } from '../../../agent/observe/metrics.ts';
import { awsMetricsPlugin } from '../../../agent/source/aws-metrics.ts';
import { classifyAwsError } from '../../../agent/source/classify.ts';
import { startServer, parseListen, type AgentServer, type Health } from '../../../agent/observe/server.ts';
import { freePort, startMoto, TEST_ROLE_ARN, type Moto } from '../../support/moto.ts';

const CANARY = 'CANARY-observe-51b7e2d9';

/** Every metric the product spec names, with its type (written out here, not derived from the code under test). */
const SPEC_METRICS: Record<string, string> = {
  secrets_agent_secret_checks_total: 'counter',
  secrets_agent_secret_fetches_total: 'counter',
  secrets_agent_secret_last_success_timestamp_seconds: 'gauge',
  secrets_agent_secret_version_changes_total: 'counter',
  secrets_agent_secret_version_created_timestamp_seconds: 'gauge',
  secrets_agent_file_renders_total: 'counter',
  secrets_agent_files_generation_timestamp_seconds: 'gauge',
  secrets_agent_notify_total: 'counter',
  secrets_agent_aws_requests_total: 'counter',
  secrets_agent_aws_request_duration_seconds: 'histogram',
  secrets_agent_credentials_expiration_timestamp_seconds: 'gauge',
  secrets_agent_ready: 'gauge',
  secrets_agent_build_info: 'gauge',
};

/** The value of one sample in a scrape, or undefined when the series is absent. */
function sample(scrape: string, series: string): number | undefined {
  for (const line of scrape.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

function logSink(): { log: ReturnType<typeof createLogger>; text: () => string } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination: out }), text: () => text };
}

void describe('AgentMetrics', () => {
  void it('when created, it exposes every spec metric with its type, plus the documented extras and process metrics', async () => {
    const m = new AgentMetrics({ version: '1.2.3' });
    const json = await m.registry.getMetricsAsJSON();
    const types = new Map(json.map((x) => [x.name, String(x.type)]));
    for (const [name, type] of Object.entries(SPEC_METRICS)) assert.equal(types.get(name), type, name);
    for (const [name, type] of Object.entries(METRIC_TYPES)) assert.equal(types.get(name), type, name);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
      assert.ok(types.has(name), name);
    }
    const scrape = await m.metrics();
    assert.equal(sample(scrape, `secrets_agent_build_info{version="1.2.3",node="${process.version}"}`), 1);
    assert.equal(sample(scrape, 'secrets_agent_ready'), 0);
    assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  });

  void it('when two agents run in one process, their registries are separate', async () => {
    const a = new AgentMetrics({ version: 'a', processMetrics: false });
    const b = new AgentMetrics({ version: 'b', processMetrics: false });
    a.setReady(true);
    assert.equal(sample(await a.metrics(), 'secrets_agent_ready'), 1);
    assert.equal(sample(await b.metrics(), 'secrets_agent_ready'), 0);
    assert.doesNotMatch(await a.metrics(), /process_cpu/);
  });

  void it('when the config is declared, every label set exists at 0 and a reload forgets what was removed', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    m.declareConfig({
      refresh: { intervalMs: 300_000 },
      secrets: [{ name: 'db' }, { name: 'tls', refreshIntervalMs: 60_000 }, { name: 'pinned', versionId: 'v1' }],
      files: [{ path: 'db.env' }, { path: 'tls.crt' }],
      notify: [{ name: 'nginx' }],
    });
    let s = await m.metrics();
    for (const secret of ['db', 'tls', 'pinned']) {
      for (const result of OUTCOMES) {
        assert.equal(sample(s, `secrets_agent_secret_checks_total{secret="${secret}",result="${result}"}`), 0);
        assert.equal(sample(s, `secrets_agent_secret_fetches_total{secret="${secret}",result="${result}"}`), 0);
      }
      assert.equal(sample(s, `secrets_agent_secret_version_changes_total{secret="${secret}"}`), 0);
    }
    assert.equal(sample(s, 'secrets_agent_secret_refresh_interval_seconds{secret="db"}'), 300);
    assert.equal(sample(s, 'secrets_agent_secret_refresh_interval_seconds{secret="tls"}'), 60);
    assert.equal(sample(s, 'secrets_agent_secret_refresh_interval_seconds{secret="pinned"}'), 0);
    assert.equal(sample(s, 'secrets_agent_file_renders_total{file="tls.crt",result="error"}'), 0);
    assert.equal(sample(s, 'secrets_agent_notify_total{target="nginx",result="success"}'), 0);
    assert.equal(sample(s, 'secrets_agent_notify_failing{target="nginx"}'), 0);
    for (const result of WRITE_RESULTS) assert.equal(sample(s, `secrets_agent_files_writes_total{result="${result}"}`), 0);

    m.secretChecked('tls', 'success', new Date(1_700_000_000_000));
    m.notified('nginx', 'error');
    m.declareConfig({ refresh: { intervalMs: 120_000 }, secrets: [{ name: 'db' }], files: [{ path: 'db.env' }], notify: [{ name: 'nginx' }] });
    s = await m.metrics();
    assert.doesNotMatch(s, /secret="tls"|secret="pinned"|file="tls.crt"/);
    assert.equal(sample(s, 'secrets_agent_secret_refresh_interval_seconds{secret="db"}'), 120);
    assert.equal(sample(s, 'secrets_agent_notify_failing{target="nginx"}'), 1, 'a reload keeps the failing state');
  });

  void it('when secrets are checked, fetched and rotated, freshness, changes and version age follow', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    m.secretFetched('db', 'success', new Date(1_000_000));
    m.versionCreated('db', new Date(500_000));
    m.secretChecked('db', 'error', new Date(2_000_000));
    let s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_secret_last_success_timestamp_seconds{secret="db"}'), 1000, 'an error does not mark it fresh');
    assert.equal(sample(s, 'secrets_agent_secret_version_changes_total{secret="db"}'), 0, 'the first load is no change');
    assert.equal(sample(s, 'secrets_agent_secret_version_created_timestamp_seconds{secret="db"}'), 500);
    assert.equal(sample(s, 'secrets_agent_secret_checks_total{secret="db",result="success"}'), 0, 'series exist before any declaration');

    m.secretChecked('db', 'success', new Date(3_000_000));
    m.versionChanged('db', new Date(2_900_000));
    m.secretFetched('db', 'success', new Date(3_001_000));
    s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_secret_last_success_timestamp_seconds{secret="db"}'), 3001);
    assert.equal(sample(s, 'secrets_agent_secret_version_changes_total{secret="db"}'), 1);
    assert.equal(sample(s, 'secrets_agent_secret_version_created_timestamp_seconds{secret="db"}'), 2900);
    assert.equal(sample(s, 'secrets_agent_secret_checks_total{secret="db",result="error"}'), 1);

    m.versionChanged('db');
    s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_secret_version_created_timestamp_seconds{secret="db"}'), undefined, 'an unknown age is absent, not the old one');
  });

  void it('when files are written and targets notified, writes, generation time and notify state follow', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    m.fileRendered('db.env', 'success');
    m.generationWritten(new Date(42_000));
    m.filesWritten('unchanged');
    m.filesWritten('error');
    m.notified('app', 'error');
    let s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_file_renders_total{file="db.env",result="success"}'), 1);
    assert.equal(sample(s, 'secrets_agent_file_renders_total{file="db.env",result="error"}'), 0);
    assert.equal(sample(s, 'secrets_agent_files_generation_timestamp_seconds'), 42);
    for (const result of WRITE_RESULTS) assert.equal(sample(s, `secrets_agent_files_writes_total{result="${result}"}`), 1, result);
    assert.equal(sample(s, 'secrets_agent_notify_failing{target="app"}'), 1);
    m.notified('app', 'success');
    m.credentialsExpire(new Date(7_200_000));
    m.configReloaded('error');
    s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_notify_failing{target="app"}'), 0);
    assert.equal(sample(s, 'secrets_agent_notify_total{target="app",result="error"}'), 1);
    assert.equal(sample(s, 'secrets_agent_credentials_expiration_timestamp_seconds'), 7200);
    assert.equal(sample(s, 'secrets_agent_config_reloads_total{result="error"}'), 1);
    m.credentialsExpire(undefined);
    assert.equal(sample(await m.metrics(), 'secrets_agent_credentials_expiration_timestamp_seconds'), 0);
  });

  void it('when a secret value reaches any input of any method, it never appears in a scrape and labels stay bounded', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    // The typed API cannot take a value where a word belongs; these casts stand for a caller bug.
    const bad = CANARY as never;
    m.secretChecked('db', bad);
    m.secretFetched('db', bad);
    m.fileRendered('db.env', bad);
    m.filesWritten(bad);
    m.notified('app', bad);
    m.configReloaded(bad);
    m.awsRequest(CANARY, bad, 0.1, 3);
    m.awsRequest(`GetSecretValue ${CANARY}`, 'success', 0.1);
    m.versionChanged('db', new Date(NaN));
    m.credentialsExpire(new Date(NaN));
    m.generationWritten(new Date(NaN));
    const quoting = Object.assign(new Error(`Unexpected token in JSON at position 3: "${CANARY}"`), { name: CANARY, code: CANARY, Code: CANARY, $fault: CANARY });
    m.awsRequest('GetSecretValue', classifyAwsError(quoting), 0.2);
    m.awsRequest('GetSecretValue', classifyAwsError(CANARY), 0.2);

    const s = await m.metrics();
    assert.ok(!s.includes(CANARY), 'canary in scrape');
    assert.ok(!s.includes('CANARY'), 'part of the canary in scrape');
    const values = (label: string) => new Set([...s.matchAll(new RegExp(`[{,]${label}="([^"]*)"`, 'g'))].map((x) => x[1]));
    const words = new Set<string>([...OUTCOMES, ...WRITE_RESULTS, ...AWS_RESULTS]);
    for (const v of values('result')) assert.ok(words.has(v!), `result="${v}"`);
    assert.deepEqual([...values('operation')].sort(), ['GetSecretValue', 'other']);
    assert.equal(sample(s, 'secrets_agent_secret_checks_total{secret="db",result="error"}'), 1);
    assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="other",result="client_error"}'), 1);
  });

  void it('when promtool lints a scrape of the real server, it reports no problems', async (t) => {
    const p = promtool();
    if (!p.ok) return t.skip(p.reason);
    const m = new AgentMetrics({ version: '0.1.0' });
    m.declareConfig({ refresh: { intervalMs: 300_000 }, secrets: [{ name: 'db' }], files: [{ path: 'db.env' }], notify: [{ name: 'nginx' }] });
    m.secretChecked('db', 'success');
    m.awsRequest('DescribeSecret', 'throttled', 1.5, 3);
    m.awsRequest('GetSecretValue', 'success', 0.012);
    m.credentialsExpire(new Date(Date.now() + 3_600_000));
    m.generationWritten();
    m.setReady(true);
    const { log } = logSink();
    const server = await startServer({ listen: '127.0.0.1:0', metrics: m, health: () => ({ live: true, ready: true }), log });
    try {
      const res = await fetch(`http://127.0.0.1:${server.address.port}/metrics`);
      const scrape = await res.text();
      assert.match(scrape, /secrets_agent_aws_request_duration_seconds_bucket/);
      const r = runPromtool(['check', 'metrics'], { input: scrape });
      assert.equal(r.status, 0, `promtool: ${r.output}`);
      assert.equal(r.output.trim(), '');
    } finally {
      await server.close();
    }
  });
});

void describe('classifyAwsError', () => {
  const cases: [string, unknown, AwsResult][] = [
    ['throttling by name', { name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } }, 'throttled'],
    ['Secrets Manager rate limit', { name: 'LimitExceededException', $metadata: { httpStatusCode: 400 } }, 'throttled'],
    ['HTTP 429', { name: 'Unknown', $metadata: { httpStatusCode: 429 } }, 'throttled'],
    ['HTTP 503', { name: 'ServiceUnavailable', $fault: 'server', $metadata: { httpStatusCode: 503 } }, 'server_error'],
    ['HTTP 500 unknown name', { name: 'Weird', $metadata: { httpStatusCode: 500 } }, 'server_error'],
    ['internal error by name', { name: 'InternalServiceError' }, 'server_error'],
    ['request timeout', { name: 'TimeoutError', code: 'ETIMEDOUT' }, 'timeout'],
    ['connection timeout', { name: 'TimeoutError' }, 'timeout'],
    ['our own deadline', { name: 'AbortError' }, 'timeout'],
    ['reset renamed TimeoutError by the Node handler', { name: 'TimeoutError', code: 'ECONNRESET' }, 'network_error'],
    ['refused', { name: 'Error', code: 'ECONNREFUSED' }, 'network_error'],
    ['DNS', { name: 'Error', code: 'ENOTFOUND' }, 'network_error'],
    ['access denied', { name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } }, 'access_denied'],
    ['bad web identity token', { name: 'InvalidIdentityToken', $metadata: { httpStatusCode: 400 } }, 'access_denied'],
    ['KMS decrypt', { name: 'DecryptionFailure', $metadata: { httpStatusCode: 400 } }, 'access_denied'],
    ['HTTP 403', { name: 'Whatever', $metadata: { httpStatusCode: 403 } }, 'access_denied'],
    ['not found', { name: 'ResourceNotFoundException', $metadata: { httpStatusCode: 400 } }, 'not_found'],
    ['no credentials', { name: 'CredentialsProviderError' }, 'credentials_error'],
    ["the agent's credentials deadline", { name: 'CredentialsError' }, 'credentials_error'],
    ['invalid request', { name: 'InvalidRequestException', $metadata: { httpStatusCode: 400 } }, 'client_error'],
    ['a bug', new TypeError('x is undefined'), 'client_error'],
    ['not an object', 'boom', 'client_error'],
    ['null', null, 'client_error'],
  ];
  for (const [what, error, expected] of cases) {
    void it(`when the error is ${what}, it is ${expected}`, () => assert.equal(classifyAwsError(error), expected));
  }
});

void describe('awsMetricsPlugin against moto', () => {
  let moto: Moto;
  let dir: string;
  const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-key' };

  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-observe-'));
  });
  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const smClient = (m: AgentMetrics, endpoint: string, maxAttempts = 3): SecretsManagerClient => {
    const client = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials, maxAttempts });
    client.middlewareStack.use(awsMetricsPlugin(m));
    return client;
  };

  void it('when Secrets Manager calls succeed or miss, each call counts once with its result and duration', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    const client = smClient(m, moto.url);
    try {
      await client.send(new CreateSecretCommand({ Name: 'obs/db', SecretString: JSON.stringify({ password: CANARY }) }));
      const got = await client.send(new GetSecretValueCommand({ SecretId: 'obs/db' }));
      assert.match(got.SecretString ?? '', new RegExp(CANARY));
      await assert.rejects(client.send(new GetSecretValueCommand({ SecretId: `obs/missing-${CANARY}` })), { name: 'ResourceNotFoundException' });
      const s = await m.metrics();
      assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="CreateSecret",result="success"}'), 1);
      assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="GetSecretValue",result="success"}'), 1);
      assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="GetSecretValue",result="not_found"}'), 1);
      assert.equal(sample(s, 'secrets_agent_aws_request_duration_seconds_count{operation="GetSecretValue"}'), 2);
      assert.ok(sample(s, 'secrets_agent_aws_request_duration_seconds_sum{operation="GetSecretValue"}')! > 0);
      assert.equal(sample(s, 'secrets_agent_aws_retries_total{operation="GetSecretValue"}'), undefined, 'no retries happened');
      assert.ok(!s.includes(CANARY), 'neither the value nor an error message that quotes input reaches the scrape');
    } finally {
      client.destroy();
    }
  });

  void it('when nothing listens on the endpoint, the call counts once as network_error and the SDK retries are counted', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    const client = smClient(m, `http://127.0.0.1:${await freePort()}`, 2);
    try {
      await assert.rejects(client.send(new GetSecretValueCommand({ SecretId: 'obs/db' })), { code: 'ECONNREFUSED' });
      const s = await m.metrics();
      assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="GetSecretValue",result="network_error"}'), 1);
      assert.equal(sample(s, 'secrets_agent_aws_request_duration_seconds_count{operation="GetSecretValue"}'), 1);
      assert.equal(sample(s, 'secrets_agent_aws_retries_total{operation="GetSecretValue"}'), 1);
    } finally {
      client.destroy();
    }
  });

  void it('when given to the web identity provider as clientPlugins, its nested STS client is measured', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    const token = join(dir, 'token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    const provider = fromTokenFile({
      webIdentityTokenFile: token,
      roleArn: TEST_ROLE_ARN,
      roleSessionName: 'observe-test',
      clientConfig: { region: 'us-east-1', endpoint: moto.url },
      clientPlugins: [awsMetricsPlugin(m)],
    });
    const creds = await provider();
    assert.ok(creds.accessKeyId);
    const s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="AssumeRoleWithWebIdentity",result="success"}'), 1);
  });

  void it('when given to the default chain (fromNodeProviderChain) as clientPlugins, the web identity STS call is measured', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    const token = join(dir, 'token-chain');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig');
    // The chain reads the environment first: hide the host's AWS settings for this call only.
    const saved = Object.entries(process.env).filter(([k]) => k.startsWith('AWS_'));
    for (const [k] of saved) delete process.env[k];
    Object.assign(process.env, { AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true' });
    try {
      const provider = fromNodeProviderChain({
        webIdentityTokenFile: token,
        roleArn: TEST_ROLE_ARN,
        roleSessionName: 'observe-chain-test',
        clientConfig: { region: 'us-east-1', endpoint: moto.url },
        clientPlugins: [awsMetricsPlugin(m)],
      });
      assert.ok((await provider()).accessKeyId);
    } finally {
      for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
      for (const [k, v] of saved) process.env[k] = v;
    }
    const s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="AssumeRoleWithWebIdentity",result="success"}'), 1);
  });

  void it('when fromTemporaryCredentials re-applies the plugin at every refresh, calls still count once each', async () => {
    const m = new AgentMetrics({ version: 't', processMetrics: false });
    const provider = fromTemporaryCredentials({
      params: { RoleArn: TEST_ROLE_ARN, RoleSessionName: 'observe-chain' },
      masterCredentials: credentials,
      clientConfig: { region: 'us-east-1', endpoint: moto.url },
      clientPlugins: [awsMetricsPlugin(m)],
    });
    await provider();
    await provider(); // the second call adds the same middleware to the same STS client again
    const s = await m.metrics();
    assert.equal(sample(s, 'secrets_agent_aws_requests_total{operation="AssumeRole",result="success"}'), 2);
  });
});

void describe('startServer', () => {
  let m: AgentMetrics;
  let server: AgentServer;
  let health: Health = { live: true, ready: false };
  let base: string;
  const sink = logSink();

  before(async () => {
    m = new AgentMetrics({ version: 't', processMetrics: false });
    server = await startServer({ listen: '127.0.0.1:0', metrics: m, health: () => health, log: sink.log });
    base = `http://127.0.0.1:${server.address.port}`;
  });
  after(async () => {
    await server?.close();
  });

  void it('when listening on port 0, it reports the real address', () => {
    assert.equal(server.address.host, '127.0.0.1');
    assert.ok(server.address.port > 0);
  });

  void it('when scraped, /metrics answers the Prometheus text format for GET and headers only for HEAD', async () => {
    const res = await fetch(`${base}/metrics?format=ignored`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), m.contentType);
    assert.match(await res.text(), /^# HELP secrets_agent_/m);
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  void it('when the loop is alive or not, /healthz answers 200 or 503', async () => {
    health = { live: true, ready: false };
    let res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok\n');
    health = { live: false, ready: false };
    res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    await res.text();
  });

  void it('when the first render completes, /readyz flips from 503 with a reason to 200', async () => {
    health = { live: true, ready: false, reason: 'waiting for secret "db" (AccessDeniedException)' };
    let res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'not ready: waiting for secret "db" (AccessDeniedException)\n');
    health = { live: true, ready: false };
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), /first render/);
    health = { live: true, ready: true };
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok\n');
  });

  void it('when the path or method is wrong, it answers 404 or 405 with Allow', async () => {
    let res = await fetch(`${base}/`);
    assert.equal(res.status, 404);
    await res.text();
    res = await fetch(`${base}/metrics/extra`);
    assert.equal(res.status, 404);
    await res.text();
    res = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
    await res.text();
  });

  void it('when the health callback throws or metrics collection fails, it answers 503/500 and keeps serving', async () => {
    const broken = new AgentMetrics({ version: 't', processMetrics: false });
    // A real collect failure: a metric whose collect() throws, registered in the agent's registry.
    new Gauge({
      name: 'test_broken_gauge',
      help: 'throws on collect',
      registers: [broken.registry],
      collect() {
        throw new Error('collect failed');
      },
    });
    const log = logSink();
    const s2 = await startServer({
      listen: '127.0.0.1:0',
      metrics: broken,
      health: () => {
        throw new Error('health exploded');
      },
      log: log.log,
    });
    try {
      const url = `http://127.0.0.1:${s2.address.port}`;
      let res = await fetch(`${url}/metrics`);
      assert.equal(res.status, 500);
      await res.text();
      res = await fetch(`${url}/healthz`);
      assert.equal(res.status, 503);
      await res.text();
      res = await fetch(`${url}/readyz`);
      assert.equal(res.status, 503);
      assert.match(await res.text(), /health check failed/);
      assert.match(log.text(), /collecting metrics failed/);
      assert.match(log.text(), /health check callback failed/);
    } finally {
      await s2.close();
    }
  });

  void it('when the address is taken, it rejects with a message naming the address and server.listen', async () => {
    const listen = `127.0.0.1:${server.address.port}`;
    await assert.rejects(startServer({ listen, metrics: m, health: () => health, log: sink.log }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EADDRINUSE');
      assert.match(err.message, /server\.listen/);
      assert.ok(err.message.includes(listen), err.message);
      assert.match(err.message, /already in use/);
      return true;
    });
  });

  void it('when the listen string is malformed, it says what form it expects', async () => {
    for (const bad of ['9102', 'localhost', 'host:99999', 'a:b', '::1:9102']) {
      await assert.rejects(startServer({ listen: bad, metrics: m, health: () => health, log: sink.log }), /server\.listen: ".*" is not "host:port"/, bad);
    }
    assert.deepEqual(parseListen(':9102'), { host: '0.0.0.0', port: 9102 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListen('0.0.0.0:9102'), { host: '0.0.0.0', port: 9102 });
  });

  void it('when a keep-alive client is connected, close() returns without waiting for the socket or the grace period', async () => {
    const s3 = await startServer({ listen: '127.0.0.1:0', metrics: m, health: () => health, log: sink.log, closeGraceMs: 60_000 });
    const agent = new Agent({ keepAlive: true });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: s3.address.port, path: '/healthz', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(status, 200);
      assert.equal(Object.values(agent.freeSockets).flat().length, 1, 'an idle keep-alive socket is open');
      // Not a timing assertion: with a 60 s grace, only closing the idle socket at once can beat 10 s.
      const closed = await Promise.race([s3.close().then(() => 'closed'), new Promise((r) => setTimeout(r, 10_000, 'hung').unref())]);
      assert.equal(closed, 'closed');
    } finally {
      agent.destroy();
      await s3.close();
    }
  });
});
