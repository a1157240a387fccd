// The image build's warm-up for the agent's V8 code cache (Dockerfile, stage
// code-cache; agent/loader.ts): one real `init` of the bundle, in this process,
// against a stand-in for STS and Secrets Manager on loopback (no network), so
// the cache holds every function an init container's `init` compiles: config
// and YAML parsing, zod, web-identity credentials, SigV4, the HTTP handler,
// BatchGetSecretValue, JSON keys, liquid templates, the atomic writer. Then the
// loader writes the cache at exit (SECRETS_AGENT_CODE_CACHE_WRITE=1).
//
//   node <the container's node flags> code-cache-warmup.mjs /app/secrets-agent.mjs [CACHE_DIR]
//
// CACHE_DIR: where the cache goes (SECRETS_AGENT_CODE_CACHE; default: code-cache/ next to the bundle).
//
// Run it with exactly the node flags of the container that will use the cache:
// the cache is keyed by V8's flags (one file per flag set, side by side).
// Built into dist/code-cache-warmup.mjs by scripts/build.ts; not in the final image.
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [bundle, cacheDir] = process.argv.slice(2);
if (!bundle) {
  process.stderr.write('usage: node <flags> code-cache-warmup.mjs <path of secrets-agent.mjs> [cache dir]\n');
  process.exit(2);
}

const SECRETS = Array.from({ length: 10 }, (_, i) => ({
  name: `s${i}`,
  arn: `arn:aws:secretsmanager:us-east-1:000000000000:secret:warmup/s${i}-AbCdEf`,
  value: JSON.stringify({ username: `app_${i}`, password: `warmup-${i}`, host: 'db.internal', port: 5432, dbname: 'app' }),
}));

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (d: Buffer) => (body += d.toString()));
  req.on('end', () => {
    const target = req.headers['x-amz-target'];
    if (target === 'secretsmanager.BatchGetSecretValue') {
      const ids = (JSON.parse(body) as { SecretIdList: string[] }).SecretIdList;
      const values = SECRETS.filter((s) => ids.includes(s.arn)).map((s) => ({
        ARN: s.arn,
        Name: s.arn.split(':').at(-1)!.replace(/-AbCdEf$/, ''),
        VersionId: `00000000-0000-0000-0000-00000000000${s.name.slice(1)}`,
        SecretString: s.value,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: 1767225600,
      }));
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ SecretValues: values, Errors: [] }));
    } else if (body.includes('Action=AssumeRoleWithWebIdentity')) {
      const expires = new Date(Date.now() + 3600_000).toISOString();
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>` +
          `<Credentials><AccessKeyId>ASIAWARMUPWARMUPWARM</AccessKeyId><SecretAccessKey>warmup</SecretAccessKey><SessionToken>warmup</SessionToken><Expiration>${expires}</Expiration></Credentials>` +
          `<SubjectFromWebIdentityToken>warmup</SubjectFromWebIdentityToken><AssumedRoleUser><AssumedRoleId>AROAWARMUP:warmup</AssumedRoleId><Arn>arn:aws:sts::000000000000:assumed-role/warmup/warmup</Arn></AssumedRoleUser>` +
          `</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>warmup</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
      );
    } else {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'ValidationException', message: `the code-cache warm-up does not answer ${String(target)}` }));
    }
  });
});
await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
server.unref();
const address = server.address();
const port = typeof address === 'object' && address ? address.port : 0;

const dir = mkdtempSync(join(tmpdir(), 'secrets-agent-warmup-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'token'), 'warmup-token');
// What an init container's config typically holds: whole secrets, JSON keys, a liquid template.
const config = [
  `outputDir: ${JSON.stringify(join(dir, 'out'))}`,
  'secrets:',
  ...SECRETS.map((s) => `  ${s.name}: { id: ${JSON.stringify(s.arn)} }`),
  'files:',
  ...SECRETS.map((s) => `  - { path: ${s.name}, secret: ${s.name} }`),
  '  - { path: db-user, secret: s0, key: username }',
  '  - path: db.env',
  '    secret: s1',
  '    template: |',
  '      {% for kv in secrets.s1 %}{{ kv[0] | upcase }}={{ kv[1] }}',
  '      {% endfor %}',
  '  - path: app.properties',
  '    template: |',
  '      db.url=jdbc:postgresql://{{ secrets.s2.host }}:{{ secrets.s2.port }}/{{ secrets.s2.dbname }}',
  '      db.version={{ meta.s2.versionId }}',
  '',
].join('\n');
writeFileSync(join(dir, 'config.yaml'), config);

Object.assign(process.env, {
  SECRETS_AGENT_CODE_CACHE_WRITE: '1',
  ...(cacheDir ? { SECRETS_AGENT_CODE_CACHE: resolve(cacheDir) } : {}),
  // The SDK looks up the home directory (shared config); a build step may have none.
  HOME: process.env.HOME || dir,
  AWS_REGION: 'us-east-1',
  AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
  AWS_ROLE_ARN: 'arn:aws:iam::000000000000:role/warmup',
  AWS_WEB_IDENTITY_TOKEN_FILE: join(dir, 'token'),
  AWS_ROLE_SESSION_NAME: 'warmup',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  AWS_EC2_METADATA_DISABLED: 'true',
});
process.argv = [process.argv[0]!, resolve(bundle), 'init', '--config', join(dir, 'config.yaml'), '--timeout', '20s', '--log-level', 'warn'];
await import(pathToFileURL(resolve(bundle)).href);
