// `convert eso` (the real CLI) on the fields that shape the Kubernetes Secret
// itself (spec.target.immutable, creationPolicy, deletionPolicy,
// template.type, template.metadata) and on ARN keys: none is dropped silently;
// each gets a diagnostic with file:line saying what it meant in ESO and what
// the agent does instead, and the printed config still validates.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { runAgent, type RunResult } from '../support/cli.ts';

const FIX = 'test/fixtures/eso/notes';
const convert = (file: string): Promise<RunResult> => runAgent(['convert', 'eso', '--output-dir', '/etc/app-secrets', join(FIX, 'store.yaml'), join(FIX, file)]);

/** The stderr line for FILE:LINE (first line of a diagnostic). */
function lineAt(r: RunResult, file: string, line: number): string {
  const l = r.stderr.split('\n').find((s) => s.startsWith(`${FIX}/${file}:${line}: `));
  assert.ok(l, `no diagnostic at ${file}:${line}:\n${r.stderr}`);
  return l;
}

describe('convert eso: the target fields and ARN keys are never dropped silently', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-eso-notes-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const validates = async (r: RunResult, name: string): Promise<void> => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, r.stdout);
    const v = await runAgent(['validate', '--config', file]);
    assert.equal(v.code, 0, v.stderr);
  };

  it('target.immutable: a note (ESO stopped syncing), converted to refreshInterval: never', async () => {
    const r = await convert('target-fields.yaml');
    assert.equal(r.code, 0, r.stderr);
    assert.match(lineAt(r, 'target-fields.yaml', 17), /note: target\.immutable: true made ESO create the Secret immutable and stop syncing it.*converted to refreshInterval: never/);
    const config = parse(r.stdout) as { secrets: Record<string, { refreshInterval?: string }>; refresh?: unknown };
    assert.equal(config.secrets['tls']?.refreshInterval, 'never', 'not the ExternalSecret\'s 15m');
    assert.equal(config.refresh, undefined);
    await validates(r, 'target-fields');
  });

  it('creationPolicy: what ESO did with the Secret; the agent creates none (Orphan: a note)', async () => {
    const r = await convert('target-fields.yaml');
    assert.match(lineAt(r, 'target-fields.yaml', 15), /note: creationPolicy Orphan: ESO created the Secret and left it behind.*the agent creates no Secret: it writes files into the pod's volume/);
  });

  it('creationPolicy Merge: the keys the Secret got from elsewhere are missing (not converted, exit 1)', async () => {
    const r = await convert('merge-dockerconfig.yaml');
    assert.equal(r.code, 1, r.stderr);
    assert.match(lineAt(r, 'merge-dockerconfig.yaml', 14), /not converted: creationPolicy Merge: ESO did not create the Secret: it merged its keys into an existing Secret.*keys the Secret got from elsewhere are not among the files/);
  });

  it('deletionPolicy: what ESO did on a deletion in AWS; the agent keeps the last value', async () => {
    const r = await convert('target-fields.yaml');
    assert.match(lineAt(r, 'target-fields.yaml', 16), /note: deletionPolicy Delete: ESO deleted the Secret once every secret it read was deleted in AWS; the agent always keeps serving the last value it read \(like Retain\)/);
  });

  it('template.type: a note for kubernetes.io/tls; a type only Kubernetes reads leaves that ExternalSecret out', async () => {
    const tls = await convert('target-fields.yaml');
    assert.match(lineAt(tls, 'target-fields.yaml', 19), /note: template\.type kubernetes\.io\/tls: the type of the Secret ESO made.*plain files with the same names, which have no type/);
    const r = await convert('merge-dockerconfig.yaml');
    assert.match(lineAt(r, 'merge-dockerconfig.yaml', 32), /not converted: template\.type kubernetes\.io\/dockerconfigjson: .*the kubelet reads such Secrets from the API server.*left out; keep it in ESO/);
    const config = parse(r.stdout) as { targets: string[]; secrets: Record<string, unknown>; files: { path?: string }[] };
    assert.deepEqual(config.targets, ['app-config'], 'the left-out target is not a root of its own');
    assert.deepEqual(Object.keys(config.secrets), ['token']);
    assert.deepEqual(config.files.map((f) => f.path), ['app-config/token']);
    await validates(r, 'merge-dockerconfig');
  });

  it('template.metadata: the labels and annotations are named; notify: is what the agent offers instead', async () => {
    const r = await convert('target-fields.yaml');
    assert.match(lineAt(r, 'target-fields.yaml', 21), /note: template\.metadata \(labels, annotations\): the labels and annotations ESO put on the Secret; files have none.*use notify:/);
  });

  it('an ARN key: the local name is the secret\'s own name (not "secrets"); a malformed ARN (account "abc") is not converted, exit 1', async () => {
    const r = await convert('tutorial.yaml');
    assert.equal(r.code, 1, r.stderr);
    const config = parse(r.stdout) as { secrets: Record<string, { id: string }>; files: { path: string; secret: string }[] };
    assert.deepEqual(Object.keys(config.secrets), ['example_secrets', 'api-key'], 'never secrets.secrets');
    assert.equal(config.secrets['example_secrets']?.id, 'arn:aws:secretsmanager:us-east-1:abc:secret:eso/example/secrets-Eq5llj');
    assert.deepEqual(config.files.map((f) => [f.path, f.secret]), [['DB_PASSWORD', 'example_secrets'], ['API_KEY', 'api-key']]);
    assert.match(lineAt(r, 'tutorial.yaml', 18), /not converted: remoteRef\.key "arn:aws:secretsmanager:us-east-1:abc:secret:eso\/example\/secrets-Eq5llj" is not a valid ARN: account "abc" is not a 12-digit account id; AWS refuses it/);
    assert.match(lineAt(r, 'tutorial.yaml', 21), /note: remoteRef\.key is an ARN: the id stays the ARN, the secret is named "api-key"/);
    assert.doesNotMatch(lineAt(r, 'tutorial.yaml', 21), /not a valid ARN/, 'a well-formed ARN is not warned about');
    await validates(r, 'tutorial');
  });
});
