// The commands of README.md and of every docs/*.md page, exactly as written.
// Every line of every ```sh block is either run here, or is a command against a
// real cluster / AWS account (kubectl, aws iam/eks, eksctl, helm), which this
// machine cannot reach, or a full benchmark run (minutes each): those are listed
// and counted, never silently ignored. `npm test` itself is run by .ci/run.
// Also: every relative link of those pages leads to a file (and heading) that exists.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { REFERENCE_FILE, withReference } from '../../scripts/config-reference.ts';
import { REPO, runAgent } from '../support/cli.ts';
import { stopAll } from '../support/procs.ts';

const README = join(REPO, 'README.md');
/** The reference pages, tested as the README is. */
const DOCS = join(REPO, 'docs');
/** README.md first (its commands start what the others look at), then docs/*.md by name. */
async function pages(): Promise<{ path: string; name: string; text: string }[]> {
  const names = ['README.md', ...(await readdir(DOCS)).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
  return Promise.all(names.map(async (name) => ({ path: name === 'README.md' ? README : join(REPO, name), name, text: await readFile(join(REPO, name), 'utf8') })));
}
/** Needs a real cluster or AWS account. */
const REMOTE = /^(kubectl|eksctl|helm|aws\s|docker\s|kustomize\s)/;
/** Long-running: started in the background for the other commands, and checked. */
const LONG = new Set(['npm start', 'bash examples/dev/app.sh']);
/** Run elsewhere: `npm test` by .ci/run (it cannot run inside itself). */
const ELSEWHERE = new Set(['npm test']);
/**
 * A full or partial benchmark run (`npm run bench`, with `--only=…` or BENCH_FLAGS),
 * or a summary of the profiles one wrote (test/bench/profile-summary.ts; its own
 * test is in test/bench/smoke.test.ts): minutes each, not run here. `npm run bench -- --quick` is run (and
 * test/bench/smoke.test.ts runs the same code on a tiny case).
 */
const BENCH = /^(\w+=\S+\s+)*(npm run bench(?! -- --quick$)|node test\/bench\/profile-summary\.ts )/;

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
  if (cmd.includes('test/fixtures/inject/env/')) {
    // The env path (docs/env-files.md): env reads the agent's env file, nothing is mounted in the app.
    assert.equal(spec.containers[0].volumeMounts, undefined);
    assert.equal(spec.containers[0].envFrom, undefined);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    for (const e of spec.containers[0].env as Record<string, any>[]) assert.ok(e.value !== undefined || e.valueFrom.fileKeyRef, `${e.name as string}`);
  } else assert.deepEqual(spec.containers[0].volumeMounts, [{ name: 'secrets-agent-files', mountPath: '/etc/app-secrets', readOnly: true }]);
  assert.equal(spec.volumes.some((v: Record<string, unknown>) => 'secret' in v), false);
  return 1;
}

/** The command without a trailing `# comment`. */
const bare = (cmd: string) => cmd.replace(/\s+#.*$/, '').trim();

/** Markdown without its fenced code blocks (same line count), so links shown as code are not taken for links. */
const withoutCode = (markdown: string) => markdown.replace(/^```[\s\S]*?^```/gm, (block) => block.replace(/[^\n]/g, ''));

/** `[text](target)` links that are not URLs (http:, mailto: …), with their line. */
function relativeLinks(markdown: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  withoutCode(markdown)
    .split('\n')
    .forEach((text, i) => {
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) if (!/^[a-z][a-z0-9+.-]*:/i.test(m[1]!)) out.push({ target: m[1]!, line: i + 1 });
    });
  return out;
}

/** The anchors GitHub gives a page: one per heading (lowercased, punctuation dropped, spaces to "-", "-1" … for repeats), and explicit ids. */
function headingAnchors(markdown: string): Set<string> {
  const set = new Set<string>();
  const text = withoutCode(markdown);
  for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    let slug = base;
    for (let n = 1; set.has(slug); n++) slug = `${base}-${n}`;
    set.add(slug);
  }
  for (const m of text.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) set.add(m[1]!);
  return set;
}

describe('README commands', () => {
  const children: ChildProcess[] = [];
  const secretsFile = join(REPO, 'examples/dev/secrets.yaml');
  let original: string | undefined;

  after(async () => {
    await stopAll(children);
    if (original !== undefined) await writeFile(secretsFile, original);
    await rm(join(REPO, '.tmp', 'eso'), { recursive: true, force: true });
  });

  it('each row of the Exit codes table (docs/commands.md) names tests that exist, and the table covers 0, 1 and 2', async () => {
    const commandsDoc = await readFile(join(DOCS, 'commands.md'), 'utf8');
    const section = /\n## Exit codes\n([\s\S]*?)\n## /.exec(commandsDoc)?.[1];
    assert.ok(section, 'docs/commands.md has an "## Exit codes" section followed by another "## " section');
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

  it('the configuration reference in docs/configuration.md is the one generated from the schema (npm run schema)', async () => {
    const page = await readFile(REFERENCE_FILE, 'utf8');
    assert.equal(page, withReference(page), 'docs/configuration.md: the configuration reference is stale: run `npm run schema`');
  });

  it('the complete example config in docs/configuration.md passes validate', async () => {
    const page = await readFile(REFERENCE_FILE, 'utf8');
    const m = /A complete example[\s\S]*?```yaml\n([\s\S]*?)```/.exec(page);
    assert.ok(m?.[1], 'docs/configuration.md has the complete example');
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

  it('every sh command in the README and docs/*.md is run here or is marked as needing a real cluster', async () => {
    const all = await pages();
    assert.ok(shellBlocks(all[0]!.text).length >= 3, 'the README shows commands');
    // Each command once, in page order: a step two pages repeat (mkdir, npm run build) runs the first time.
    const seen = new Set<string>();
    const commands: { cmd: string; page: string }[] = [];
    for (const page of all) {
      for (const cmd of shellBlocks(page.text)) {
        if (seen.has(cmd)) continue;
        seen.add(cmd);
        commands.push({ cmd, page: page.name });
      }
    }
    const remote = commands.filter(({ cmd }) => REMOTE.test(cmd));
    const bench = commands.filter(({ cmd }) => !REMOTE.test(cmd) && BENCH.test(bare(cmd)));
    const local = commands.filter(({ cmd }) => !REMOTE.test(cmd) && !BENCH.test(bare(cmd)) && !ELSEWHERE.has(bare(cmd)));
    const tagged = (info: string) => all.reduce((n, p) => n + (p.text.match(new RegExp('```' + info + '\\n', 'g')) ?? []).length, 0);
    // Install blocks carry their kind in the info string; test/artifacts/k8s-examples.test.ts runs the `sh install` ones.
    process.stdout.write(
      `# README and ${all.length - 1} docs pages: ${local.length} commands run here, ${remote.length} untagged remote, ${bench.length} benchmark runs not run (${bench.map((b) => `${b.page}: ${bare(b.cmd)}`).join('; ')}); install blocks: ${tagged('sh install')} run by k8s-examples.test.ts, ${tagged('sh cluster')} cluster, ${tagged('sh docker')} docker\n`,
    );

    // npm start first (the others look at what it writes), then the sample app.
    original = await readFile(secretsFile, 'utf8');
    let startLog = '';
    if (local.some(({ cmd }) => bare(cmd) === 'npm start')) {
      const start = spawn('npm', ['start'], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(start);
      start.stdout.on('data', (d: Buffer) => (startLog += d.toString()));
      start.stderr.on('data', (d: Buffer) => (startLog += d.toString()));
      for (let i = 0; i < 200 && !startLog.includes('first render complete'); i++) await sleep(100);
      assert.match(startLog, /first render complete/, `npm start:\n${startLog}`);
    }
    let appLog = '';
    if (local.some(({ cmd }) => bare(cmd) === 'bash examples/dev/app.sh')) {
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
    for (const { cmd, page } of local) {
      if (LONG.has(bare(cmd))) continue;
      const r = spawnSync('bash', ['-c', cmd], { cwd: REPO, encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, `${page}: command failed: ${cmd}\n${r.stdout}\n${r.stderr}`);
      esoChecked += await checkEsoOutput(bare(cmd), r.stdout);
    }
    // docs/migrate-from-eso.md: the convert and both inject commands (env, files) ran and printed valid output.
    assert.equal(esoChecked, 3, 'docs/migrate-from-eso.md converts and injects the examples/eso manifests and the env example');
  });

  it('every relative link in README.md and docs/*.md leads to a file that exists, and an #anchor to a heading of it', async () => {
    const all = await pages();
    const anchorsOf = new Map<string, Set<string>>();
    const anchors = async (file: string): Promise<Set<string>> => {
      let set = anchorsOf.get(file);
      if (!set) anchorsOf.set(file, (set = headingAnchors(await readFile(file, 'utf8'))));
      return set;
    };
    const broken: string[] = [];
    let checked = 0;
    for (const page of all) {
      for (const { target, line } of relativeLinks(page.text)) {
        checked++;
        const [path = '', anchor] = target.split('#');
        const file = path === '' ? page.path : join(dirname(page.path), decodeURIComponent(path));
        if (!existsSync(file)) broken.push(`${page.name}:${line}: ${target}: no ${relative(REPO, file)}`);
        else if (anchor && file.endsWith('.md') && !(await anchors(file)).has(anchor)) broken.push(`${page.name}:${line}: ${target}: ${relative(REPO, file)} has no heading or id "${anchor}"`);
      }
    }
    assert.ok(checked >= 20, `only ${checked} relative links found`);
    assert.deepEqual(broken, [], 'broken relative links (paths are relative to the page that holds them)');
  });
});
