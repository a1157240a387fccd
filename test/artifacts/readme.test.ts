// The README's commands, exactly as written. Every line of every ```sh block is
// either run here, or is a command against a real cluster / AWS account (kubectl,
// aws iam/eks, eksctl, helm), which this machine cannot reach: those are listed
// and counted, never silently ignored. `npm test` itself is run by .ci/run.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { withReference } from '../../scripts/config-reference.ts';
import { REPO, runAgent } from '../support/cli.ts';
import { stopAll } from '../support/procs.ts';

const README = join(REPO, 'README.md');
/** Needs a real cluster or AWS account. */
const REMOTE = /^(kubectl|eksctl|helm|aws\s|docker\s|kustomize\s)/;
/** Long-running: started in the background for the other commands, and checked. */
const LONG = new Set(['npm start', 'bash examples/dev/app.sh']);
/** Run elsewhere: `npm test` by .ci/run (it cannot run inside itself). */
const ELSEWHERE = new Set(['npm test']);

function shellBlocks(markdown: string): string[] {
  const lines: string[] = [];
  const re = /```(?:sh|bash|shell)\n([\s\S]*?)```/g;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) {
    let pending = '';
    for (const raw of (m[1] ?? '').split('\n')) {
      const line = raw.trimEnd();
      if (line.endsWith('\\')) {
        pending += line.slice(0, -1) + ' ';
        continue;
      }
      const full = (pending + line).trim();
      pending = '';
      if (full && !full.startsWith('#')) lines.push(full);
    }
  }
  return lines;
}

/**
 * The output of the README's `convert eso` and `inject` commands is what they
 * promise: a config that passes validate, and manifests whose ConfigMap holds
 * such a config and whose pod runs the agent, with the app reading the same
 * path from the agent's volume. Returns 1 when `cmd` was one of them.
 */
async function checkEsoOutput(cmd: string, stdout: string): Promise<number> {
  const validateText = async (text: string): Promise<void> => {
    const path = join(REPO, `.readme-eso-${process.pid}.yaml`);
    await writeFile(path, text);
    try {
      const v = await runAgent(['validate', '--config', path]);
      assert.equal(v.code, 0, `${cmd}: the config does not validate:\n${v.stderr}`);
    } finally {
      await rm(path, { force: true });
    }
  };
  if (/^node agent\/main\.ts convert eso /.test(cmd)) {
    await validateText(stdout);
    return 1;
  }
  const inject = /^node agent\/main\.ts inject .* > (\S+)$/.exec(cmd);
  if (!inject) return 0;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const docs = parseAllDocuments(await readFile(join(REPO, inject[1]!), 'utf8')).map((d) => d.toJS() as Record<string, any>);
  const [cm, deployment] = docs;
  assert.equal(cm?.kind, 'ConfigMap', cmd);
  assert.equal(deployment?.kind, 'Deployment', cmd);
  // Its templateFile paths are the image's (../templates/): at the repo root they resolve to templates/ as well.
  await validateText(cm.data['config.yaml'] as string);
  const spec = deployment.spec.template.spec;
  assert.equal(spec.initContainers[0].name, 'secrets-agent');
  assert.equal(spec.initContainers[0].restartPolicy, 'Always');
  assert.deepEqual(spec.containers[0].volumeMounts, [{ name: 'secrets-agent-files', mountPath: '/etc/app-secrets', readOnly: true }]);
  assert.equal(spec.volumes.some((v: Record<string, unknown>) => 'secret' in v), false);
  return 1;
}

/** The command without a trailing `# comment`. */
const bare = (cmd: string) => cmd.replace(/\s+#.*$/, '').trim();

describe('README commands', () => {
  const children: ChildProcess[] = [];
  const secretsFile = join(REPO, 'examples/dev/secrets.yaml');
  let original: string | undefined;

  after(async () => {
    await stopAll(children);
    if (original !== undefined) await writeFile(secretsFile, original);
    await rm(join(REPO, '.tmp', 'eso'), { recursive: true, force: true });
  });

  it('each row of the Exit codes table names tests that exist, and the table covers 0, 1 and 2', async () => {
    const readme = await readFile(README, 'utf8');
    const section = /### Exit codes\n([\s\S]*?)\n### /.exec(readme)?.[1];
    assert.ok(section, 'README has an "### Exit codes" section');
    const rows = section.split('\n').filter((l) => /^\| [0-9] \|/.test(l));
    assert.deepEqual(rows.map((r) => r.split('|')[1]?.trim()), ['0', '1', '2']);
    for (const row of rows) {
      const refs = [...row.matchAll(/`(test\/[^`]+\.test\.ts)`: ((?:"[^"]+"(?:; |$| \|))+)/g)];
      assert.ok(refs.length > 0, `exit code row names no test: ${row}`);
      for (const [, file, names] of refs) {
        const source = await readFile(join(REPO, file!), 'utf8');
        for (const [, name] of names!.matchAll(/"([^"]+)"/g)) assert.ok(source.includes(name!), `${file} has no test named like "${name}"`);
      }
    }
  });

  it('the configuration reference is the one generated from the schema (npm run schema)', async () => {
    const readme = await readFile(README, 'utf8');
    assert.equal(readme, withReference(readme), 'README.md configuration reference is stale: run `npm run schema`');
  });

  it('the complete example config in the README passes validate', async () => {
    const readme = await readFile(README, 'utf8');
    const m = /A complete example[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme);
    assert.ok(m?.[1], 'the README has the complete example');
    // At the repo root, so `templateFile: templates/dotenv.liquid` resolves as it would beside a ConfigMap.
    const path = join(REPO, `.readme-example-${process.pid}.yaml`);
    await writeFile(path, m[1]);
    try {
      const r = await runAgent(['validate', '--config', path]);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      await rm(path, { force: true });
    }
  });

  it('every sh command in the README is run here or is marked as needing a real cluster', async () => {
    const commands = shellBlocks(await readFile(README, 'utf8'));
    assert.ok(commands.length >= 5, 'the README shows commands');
    const remote = commands.filter((c) => REMOTE.test(c));
    const local = commands.filter((c) => !REMOTE.test(c) && !ELSEWHERE.has(bare(c)));
    const readme = await readFile(README, 'utf8');
    const tagged = (info: string) => (readme.match(new RegExp('```' + info + '\\n', 'g')) ?? []).length;
    // Install blocks carry their kind in the info string; test/artifacts/k8s-examples.test.ts runs the `sh install` ones.
    process.stdout.write(
      `# README: ${local.length} commands run here, ${remote.length} untagged remote; install blocks: ${tagged('sh install')} run by k8s-examples.test.ts, ${tagged('sh cluster')} cluster, ${tagged('sh docker')} docker\n`,
    );

    // npm start first (the others look at what it writes), then the sample app.
    original = await readFile(secretsFile, 'utf8');
    let startLog = '';
    if (local.some((c) => bare(c) === 'npm start')) {
      const start = spawn('npm', ['start'], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(start);
      start.stdout.on('data', (d: Buffer) => (startLog += d.toString()));
      start.stderr.on('data', (d: Buffer) => (startLog += d.toString()));
      for (let i = 0; i < 200 && !startLog.includes('first render complete'); i++) await sleep(100);
      assert.match(startLog, /first render complete/, `npm start:\n${startLog}`);
    }
    let appLog = '';
    if (local.some((c) => bare(c) === 'bash examples/dev/app.sh')) {
      const app = spawn('bash', ['examples/dev/app.sh'], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(app);
      app.stdout.on('data', (d: Buffer) => (appLog += d.toString()));
      for (let i = 0; i < 50 && !appLog.includes('sample app running'); i++) await sleep(100);
      assert.match(appLog, /sample app running/);
      // What the README tells the reader to do next: change the password and watch the app reload.
      await writeFile(secretsFile, original.replace('dev-password-change-me', 'dev-password-changed-by-readme-test'));
      for (let i = 0; i < 100 && !appLog.includes('dev-password-changed-by-readme-test'); i++) await sleep(100);
      assert.match(appLog, /app reloaded its secrets/, `the sample app got no SIGHUP:\n${appLog}\n${startLog}`);
      assert.match(appLog, /dev-password-changed-by-readme-test/);
    }

    let esoChecked = 0;
    for (const cmd of local) {
      if (LONG.has(bare(cmd))) continue;
      const r = spawnSync('bash', ['-c', cmd], { cwd: REPO, encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, `README command failed: ${cmd}\n${r.stdout}\n${r.stderr}`);
      esoChecked += await checkEsoOutput(bare(cmd), r.stdout);
    }
    // "Coming from External Secrets Operator": both the convert and the inject command ran and printed valid output.
    assert.equal(esoChecked, 2, 'the README converts and injects the examples/eso manifests');
  });
});
