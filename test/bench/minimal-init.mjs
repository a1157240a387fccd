// The floor for `init`: what a hand-written init container with the AWS SDK
// does at the least. Web identity credentials (AWS_ROLE_ARN + the token file,
// one STS call), GetSecretValue for every secret in parallel, each value
// written as-is to <outDir>/<basename of the id>. No config, no validation,
// no templates, no atomic swap, no retries beyond the SDK's own.
//
//   node test/bench/minimal-init.mjs <outDir> <secretId>...
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { fromTokenFile } from '@aws-sdk/credential-providers';
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import process from 'node:process';

const [outDir, ...ids] = process.argv.slice(2);
const client = new SecretsManagerClient({ region: process.env.AWS_REGION, credentials: fromTokenFile() });
await Promise.all(
  ids.map(async (id) => {
    const out = await client.send(new GetSecretValueCommand({ SecretId: id }));
    await writeFile(join(outDir, basename(id)), out.SecretString ?? out.SecretBinary ?? '', { mode: 0o400 });
  }),
);
client.destroy();
