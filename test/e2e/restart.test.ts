// The restart notify (agent/notify/restart.ts), end to end, in a real PID
// namespace: `unshare --pid --fork --mount-proc` makes the pod's namespace, whose
// pid 1 (a `sleep`) stands in for the pause process; the agent (`node agent/main.ts
// run`) and the app are started into it with nsenter from outside, so each is a
// container main process there (parent pid 0), as under a real container runtime.
// The kubelet is the one thing mocked: test/support/stand-in-kubelet.ts starts the
// app and starts it again when it exits (restartPolicy Always). The app is a shell
// script that reads its env file at each start, as the kubelet reads a fileKeyRef
// at container start. AWS is moto (and the local file source where one write of
// several rotated secrets must be certain). Needs root (namespaces): skipped otherwise.
//
// The refusals (Job, CronJob) run the real CLI and need nothing special.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAllDocuments } from 'yaml';
import { runAgent, serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { stopAgent, taggedEnv, tagTree } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';

const KUBELET = new URL('../support/stand-in-kubelet.ts', import.meta.url).pathname;
const REPLICAS = new URL('../support/restart-replicas.ts', import.meta.url).pathname;
const OLD = 'old-CANARY-restart-4b1e';
const NEW = 'new-CANARY-restart-9d7c';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed manifests, read by their known paths
type Obj = Record<string, any>;

/** Why namespaces cannot be made here, or undefined when they can. */
function namespacesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to make a PID namespace (unshare --pid)';
  const probe = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { encoding: 'utf8' });
  if (probe.status !== 0) return `unshare --pid --fork --mount-proc fails here: ${probe.error?.message ?? probe.stderr.trim()}`;
  if (spawnSync('nsenter', ['--version']).status !== 0) return 'nsenter (util-linux) is not installed';
  return undefined;
}

/**
 * The stand-in app, as a shell script named after its container: at each start it
 * reads DB_PASSWORD from the env file and records it; on SIGTERM it records what the
 * file holds at that moment (so the test sees that the new generation was written
 * before the signal came), then exits 143 as a process ended by SIGTERM does.
 */
function appScript(envFile: string, events: string): string {
  return `#!/bin/sh
value() { sed -n 's/^DB_PASSWORD=//p' '${envFile}'; }
name=$(basename "$0")
echo "{\\"app\\":\\"$name\\",\\"event\\":\\"started\\",\\"pid\\":$$,\\"value\\":\\"$(value)\\"}" >> '${events}'
trap 'echo "{\\"app\\":\\"$name\\",\\"event\\":\\"sigterm\\",\\"pid\\":$$,\\"file\\":\\"$(value)\\"}" >> '"'${events}'"'; exit 143' TERM
while :; do sleep 0.05; done
`;
}

/** JSON lines of a text. */
function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A pod: its PID namespace (pid 1 is `sleep`, the pause stand-in), and how to start processes in it. */
interface Pod {
  readonly unshare: ChildProcess;
  /** The host pid of the namespace's pid 1. */
  readonly pause: number;
  /** Prefix that starts a command in the pod's namespace from outside (as the runtime does). */
  readonly enter: readonly string[];
}

async function startPod(): Promise<Pod> {
  const { env, tag } = taggedEnv(process.env);
  const unshare = spawn('unshare', ['--pid', '--fork', '--mount-proc', 'sleep', 'infinity'], { stdio: 'ignore', detached: true, env });
  tagTree(unshare, tag);
  let pause = 0;
  await waitUntil('the pod namespace to exist', async () => {
    const children = (await readOr(`/proc/${unshare.pid}/task/${unshare.pid}/children`)).trim();
    pause = Number(children.split(' ')[0] ?? 0);
    return pause > 0 && (await readOr(`/proc/${pause}/comm`)).trim() === 'sleep';
  });
  return { unshare, pause, enter: ['nsenter', '-t', String(pause), '-p', '-m', '--'] };
}

/** The stand-in kubelet, starting `containers` (name -> program) in the pod; its events so far. */
function startKubelet(pod: Pod, containers: Record<string, string>) {
  const { env, tag } = taggedEnv(process.env);
  const child = spawn(process.execPath, [KUBELET, String(pod.pause), ...Object.entries(containers).map(([n, p]) => `${n}=${p}`)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
    env,
  });
  tagTree(child, tag);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return { child, events: () => jsonLines(out) };
}

/** The end of a pod: no more restarts, then its pid 1 killed (the kernel ends every process in the namespace). */
async function endPod(pod: Pod | undefined, kubelet: { child: ChildProcess } | undefined): Promise<void> {
  if (kubelet && kubelet.child.exitCode === null && kubelet.child.signalCode === null) {
    const gone = new Promise((r) => kubelet.child.once('exit', r));
    kubelet.child.kill('SIGTERM');
    await gone;
  }
  if (pod) {
    try {
      process.kill(pod.pause, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

const skip = namespacesUnavailable();

describe('restart notify: the app container restarts once per rotation, in a real PID namespace', { skip }, () => {
  let moto: Moto;
  let root: string;
  const procs: (ChildProcess | RunningAgent)[] = [];
  const pods: { pod: Pod; kubelet?: { child: ChildProcess } }[] = [];

  before(async () => {
    ({ moto, root } = await openWorkspace('sa-e2e-restart-'));
  });

  /** A pod (its PID namespace) that after() ends, with the kubelet stand-in the test attaches to it. */
  const openPod = async (): Promise<{ pod: Pod; kubelet?: { child: ChildProcess } }> => {
    const entry: { pod: Pod; kubelet?: { child: ChildProcess } } = { pod: await startPod() };
    pods.push(entry);
    procs.push(entry.pod.unshare);
    return entry;
  };

  after(async () => {
    for (const p of pods) await endPod(p.pod, p.kubelet);
    await closeWorkspace({ moto, root }, procs);
  });

  it('after a rotation of two secrets in one write: one SIGTERM, sent after the new generation was written; the app starts again with the new value; a wrong name is refused naming what was seen', async () => {
    const events = join(root, 'app-events');
    // The local file source: a rotation of both secrets is one edit of its file, read in one
    // snapshot, so it is one write however loaded the machine (AWS checks of two secrets may
    // land in two writes, and then rightly restart twice). The wrong name first: it runs while
    // the app is up.
    const { dir, out, config } = await writeCase(
      root,
      'one',
      (o) => `source: { type: file, path: secrets.yaml }
outputDir: ${o}
secrets:
  db: { id: restart/db }
  api: { id: restart/api }
files:
  - path: app.env
    template: "DB_PASSWORD={{ secrets.db }}\\nAPI_KEY={{ secrets.api }}\\n"
notify:
  - restart: { process: not-the-app }
    splay: "0"
    name: wrong-name
  - restart: { process: app, grace: 5s }
    splay: 300ms
server: { listen: "127.0.0.1:0" }
`,
    );
    const rotate = async (db: string, api: string): Promise<void> => {
      await writeFile(join(dir, 'secrets.tmp'), `restart/db: ${db}\nrestart/api: ${api}\n`);
      await rename(join(dir, 'secrets.tmp'), join(dir, 'secrets.yaml'));
    };
    await rotate(OLD, 'api-one');
    const app = join(dir, 'app');
    await writeFile(app, appScript(join(out, 'app.env'), events));
    await chmod(app, 0o755);

    const entry = await openPod();
    const { pod } = entry;
    // The agent first (a native sidecar starts before the app), in the pod's namespace.
    const agent = startAgent(['run', '--config', config], { wrapper: pod.enter });
    procs.push(agent);
    await agent.waitFor(/first render complete; ready/);
    const url = await serverUrl(agent);
    const kubelet = startKubelet(pod, { app });
    entry.kubelet = kubelet;
    procs.push(kubelet.child);
    const appEvents = async () => jsonLines(await readOr(events));
    await waitUntil('the app to start', async () => (await appEvents()).some((e) => e.event === 'started'));
    assert.equal((await appEvents())[0]?.value, OLD);
    const before = await readlink(join(out, '..data'));

    await rotate(NEW, 'api-two');
    await agent.waitFor(/"target":"restart:app".*"notify target succeeded"|"notify target succeeded".*"target":"restart:app"/);
    await waitUntil('the app to start again', async () => (await appEvents()).filter((e) => e.event === 'started').length >= 2);
    await sleep(1500); // nothing more may come

    const seen = await appEvents();
    const stderr = agent.output().stderr;
    assert.deepEqual(
      seen.map((e) => [e.event, e.event === 'started' ? e.value : e.file]),
      [
        ['started', OLD],
        ['sigterm', NEW], // the signal came after the new value was on the volume
        ['started', NEW],
      ],
      stderr,
    );
    assert.notEqual(await readlink(join(out, '..data')), before, 'a new generation');
    const exits = kubelet.events().filter((e) => e.event === 'exit');
    assert.equal(exits.length, 1, JSON.stringify(kubelet.events()));
    assert.equal(exits[0]?.code, 143); // what the kubelet records as the container's exit code
    const records = jsonLines(stderr);
    const restarts = records.filter((r) => r.target === 'restart:app');
    assert.equal(restarts.length, 1, stderr);
    assert.equal(restarts[0]?.result, 'success');
    assert.match(String(restarts[0]?.reason), /^restarted the app's container: sent SIGTERM to pid \d+ "app" \(\/bin\/sh\), which exited after/);
    process.stdout.write(`# SIGTERM to the app's exit, as the agent measured it: ${String(restarts[0]?.exitedAfterMs)} ms (the app polls with sleep 0.05)\n`);
    assert.ok(!stderr.includes('cannot work in this pod'), 'the pod shares its namespace: no start-up warning');
    const wrong = records.filter((r) => r.target === 'wrong-name');
    assert.equal(wrong.length, 1, stderr);
    assert.equal(wrong[0]?.result, 'failure');
    // It names the container main processes it saw, and only those: never the agent's own, never pid 1.
    assert.match(String(wrong[0]?.reason), /no container main process matches "not-the-app" \(the container main processes seen: pid \d+ "app" \(\/bin\/sh\)\); set restart.process/);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /secrets_agent_notify_total\{target="restart:app",result="success"\} 1\b/);
    assert.match(metrics, /secrets_agent_notify_total\{target="wrong-name",result="error"\} 1\b/);
    // The canary (the new value) is in the app's env file and nowhere the agent writes.
    for (const text of [stderr, agent.output().stdout, metrics]) assert.ok(!text.includes(NEW) && !text.includes(OLD));
  });

  it('against AWS (moto): a rotation found by the periodic check restarts the app once, with the new value', async () => {
    await moto.sm('CreateSecret', { Name: 'restart/aws-db', SecretString: OLD });
    const events = join(root, 'aws-events');
    const { dir, out, config } = await writeCase(
      root,
      'aws',
      (o) => `outputDir: ${o}
refresh: { interval: 500ms, jitter: 0 }
secrets:
  db: { id: restart/aws-db }
files:
  - path: app.env
    template: "DB_PASSWORD={{ secrets.db }}\\n"
notify:
  - restart: { process: app }
    splay: 200ms
server: { listen: "127.0.0.1:0" }
`,
    );
    const app = join(dir, 'app');
    await writeFile(app, appScript(join(out, 'app.env'), events));
    await chmod(app, 0o755);
    const entry = await openPod();
    const { pod } = entry;
    const agent = startAgent(['run', '--config', config], { env: agentEnv(moto, join(root, 'token')), wrapper: pod.enter });
    procs.push(agent);
    await agent.waitFor(/first render complete; ready/);
    const kubelet = startKubelet(pod, { app });
    entry.kubelet = kubelet;
    procs.push(kubelet.child);
    const appEvents = async () => jsonLines(await readOr(events));
    await waitUntil('the app to start', async () => (await appEvents()).some((e) => e.event === 'started'));

    await moto.sm('PutSecretValue', { SecretId: 'restart/aws-db', SecretString: NEW });
    await waitUntil('the app to start again', async () => (await appEvents()).filter((e) => e.event === 'started').length >= 2, 30_000);
    await sleep(1500); // three more checks: nothing more may come
    assert.deepEqual(
      (await appEvents()).map((e) => [e.event, e.event === 'started' ? e.value : e.file]),
      [
        ['started', OLD],
        ['sigterm', NEW],
        ['started', NEW],
      ],
      agent.output().stderr,
    );
    assert.equal(kubelet.events().filter((e) => e.event === 'exit').length, 1);
    for (const text of [agent.output().stderr, agent.output().stdout]) assert.ok(!text.includes(NEW) && !text.includes(OLD));
  });

  it('splay: 20 replicas told of one rotation at once restart spread over the window, each exactly once (a second write during the splay adds no restart)', async () => {
    const count = 20;
    const splayMs = 4000;
    const dir = join(root, 'replicas');
    const { out } = await writeCase(root, 'replicas', () => '');
    const events = join(dir, 'app-events');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'app.env'), 'DB_PASSWORD=same\n');
    const script = join(dir, 'app');
    await writeFile(script, appScript(join(out, 'app.env'), events));
    await chmod(script, 0o755);
    const containers: Record<string, string> = {};
    for (let i = 1; i <= count; i++) {
      const name = `app-${String(i).padStart(2, '0')}`;
      await copyFile(script, join(dir, name));
      await chmod(join(dir, name), 0o755);
      containers[name] = join(dir, name);
    }
    const entry = await openPod();
    const { pod } = entry;
    const kubelet = startKubelet(pod, containers);
    entry.kubelet = kubelet;
    procs.push(kubelet.child);
    await waitUntil('every app to start', async () => new Set((await readOr(events)).split('\n').filter((l) => l.includes('"started"')).map((l) => JSON.parse(l).app)).size === count);

    // Each replica is told twice: a second write while its restart waits for the splay needs no second restart.
    const driver = startAgent([String(count), String(splayMs), '5000', '--twice'], { entry: REPLICAS, wrapper: pod.enter });
    procs.push(driver);
    const { code } = await driver.exited;
    assert.equal(code, 0, driver.output().stderr);
    const told = Number(jsonLines(driver.output().stdout).find((e) => e.event === 'notify')?.at);
    await waitUntil('every app to start again', () => kubelet.events().filter((e) => e.event === 'start').length === 2 * count);

    const results = jsonLines(driver.output().stderr).filter((r) => r.msg === 'notify target succeeded');
    assert.equal(results.length, count, driver.output().stderr);
    const notNeeded = jsonLines(driver.output().stderr).filter((r) => r.msg === 'notify target not due: the app container was restarted after this change already');
    assert.equal(notNeeded.length, count, driver.output().stderr);
    const exits = kubelet.events().filter((e) => e.event === 'exit');
    assert.deepEqual(exits.map((e) => e.container).sort(), Object.keys(containers), 'each replica restarted exactly once');
    const offsets = exits.map((e) => Number(e.at) - told).sort((a, b) => a - b);
    process.stdout.write(`# restart offsets of ${count} replicas after one rotation (splay ${splayMs} ms): ${offsets.join(' ')} ms\n`);
    // Uniform over the window: 20 draws all within half of it has a chance of about 20 * 2^-19.
    assert.ok(offsets.at(-1)! - offsets[0]! >= splayMs / 2, `restarts not spread: ${offsets.join(' ')}`);
    assert.ok(offsets[0]! >= 0);
  });

  it('two container main processes answer to the name: neither is signalled, and the failure names both', async () => {
    const dir = join(root, 'ambiguous');
    const { out } = await writeCase(root, 'ambiguous', () => '');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'app.env'), 'DB_PASSWORD=same\n');
    const containers: Record<string, string> = {};
    for (const c of ['one', 'two']) {
      await mkdir(join(dir, c));
      await writeFile(join(dir, c, 'app'), appScript(join(out, 'app.env'), join(dir, 'app-events')));
      await chmod(join(dir, c, 'app'), 0o755);
      containers[c] = join(dir, c, 'app');
    }
    const entry = await openPod();
    const { pod } = entry;
    const kubelet = startKubelet(pod, containers);
    entry.kubelet = kubelet;
    procs.push(kubelet.child);
    await waitUntil('both apps to start', async () => (await readOr(join(dir, 'app-events'))).split('\n').filter((l) => l.includes('"started"')).length === 2);

    const driver = startAgent(['1', '0', '1000', '--process', 'app'], { entry: REPLICAS, wrapper: pod.enter });
    procs.push(driver);
    assert.equal((await driver.exited).code, 0, driver.output().stderr);
    const [result, ...more] = jsonLines(driver.output().stderr).filter((r) => r.target === 'restart:app-01');
    assert.equal(more.length, 0);
    assert.equal(result?.result, 'failure');
    assert.match(String(result?.reason), /^2 container main processes match "app" \(pid \d+ "app" \(\/bin\/sh\), pid \d+ "app" \(\/bin\/sh\)\), and the agent restarts exactly one; set restart.process to the absolute path/);
    await sleep(300);
    assert.deepEqual(kubelet.events().filter((e) => e.event === 'exit'), [], 'nothing was signalled');
  });

  it('an app that ignores SIGTERM gets SIGKILL after grace, and the restart is reported with killed: true', async () => {
    const dir = join(root, 'stubborn');
    const { out } = await writeCase(root, 'stubborn', () => '');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'app.env'), 'DB_PASSWORD=same\n');
    const app = join(dir, 'app-01');
    await writeFile(app, appScript(join(out, 'app.env'), join(dir, 'app-events')).replace(/^trap .*$/m, "trap '' TERM"));
    await chmod(app, 0o755);
    const entry = await openPod();
    const { pod } = entry;
    const kubelet = startKubelet(pod, { 'app-01': app });
    entry.kubelet = kubelet;
    procs.push(kubelet.child);
    await waitUntil('the app to start', async () => (await readOr(join(dir, 'app-events'))).includes('"started"'));

    const driver = startAgent(['1', '0', '300'], { entry: REPLICAS, wrapper: pod.enter });
    procs.push(driver);
    assert.equal((await driver.exited).code, 0, driver.output().stderr);
    const [result] = jsonLines(driver.output().stderr).filter((r) => r.target === 'restart:app-01');
    assert.equal(result?.result, 'success', driver.output().stderr);
    assert.equal(result?.killed, true);
    assert.match(String(result?.reason), /which had not exited after 300ms \(restart.grace\), so it got SIGKILL/);
    await waitUntil('the app to start again', () => kubelet.events().filter((e) => e.event === 'start').length === 2);
    assert.deepEqual(kubelet.events().filter((e) => e.event === 'exit').map((e) => e.signal), ['SIGKILL']);
  });
});

describe('restart notify: refused where the kubelet would not start the app again', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sa-e2e-restart-refuse-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const CONFIG = `outputDir: /run/secrets/app
secrets:
  db: { id: app/db }
files:
  - path: app.env
    template: "DB_PASSWORD={{ secrets.db }}\\n"
notify:
  - restart: { process: my-app }
`;
  const manifest = (kind: 'Deployment' | 'Job' | 'CronJob', runAsUser?: number): string => {
    const pod = `spec:${runAsUser === undefined ? '' : `\n      securityContext: { runAsUser: ${runAsUser} }`}
      containers:
        - name: app
          image: example/app:1
      restartPolicy: ${kind === 'Deployment' ? 'Always' : 'OnFailure'}`;
    if (kind === 'CronJob') return `apiVersion: batch/v1\nkind: CronJob\nmetadata: { name: nightly }\nspec:\n  schedule: "0 3 * * *"\n  jobTemplate:\n    spec:\n      template:\n        ${pod.replaceAll('\n', '\n    ')}\n`;
    const selector = kind === 'Deployment' ? '  selector: { matchLabels: { app: app } }\n' : '';
    return `apiVersion: ${kind === 'Job' ? 'batch/v1' : 'apps/v1'}\nkind: ${kind}\nmetadata: { name: app }\nspec:\n${selector}  template:\n    metadata: { labels: { app: app } }\n    ${pod}\n`;
  };

  it('inject refuses a Job and a CronJob (exit 2, nothing printed); on a Deployment it sets shareProcessNamespace and runs the agent as the app\'s user', async () => {
    const config = join(root, 'config.yaml');
    await writeFile(config, CONFIG);
    for (const kind of ['Job', 'CronJob'] as const) {
      const file = join(root, `${kind}.yaml`);
      await writeFile(file, manifest(kind));
      const r = await runAgent(['inject', '--config', config, file]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`${kind}.yaml:\\d+: error: a restart notify cannot serve a ${kind}: its pods run to completion`));
    }
    const file = join(root, 'deployment.yaml');
    await writeFile(file, manifest('Deployment', 1000));
    const r = await runAgent(['inject', '--config', config, '--image', 'example/agent:1', file]);
    assert.equal(r.code, 0, r.stderr);
    const [, deployment] = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    const spec = deployment?.spec.template.spec;
    assert.equal(spec.shareProcessNamespace, true);
    assert.equal(spec.initContainers[0].name, 'secrets-agent');
    assert.equal(spec.initContainers[0].securityContext.runAsUser, 1000, 'the app\'s UID: the agent may signal the app');
    const { Deployment } = await import('kubernetes-models/apps/v1/Deployment');
    new Deployment(deployment).validate();
    // The app's user unknown (the image's USER): the agent keeps its own, and a note says what to set.
    await writeFile(file, manifest('Deployment'));
    const unknown = await runAgent(['inject', '--config', config, '--image', 'example/agent:1', file]);
    assert.equal(unknown.code, 0, unknown.stderr);
    assert.match(unknown.stderr, /deployment\.yaml:\d+: note: the restart notify ends the app container's main process, which the agent may do only as the app's user, and the app containers set no securityContext.runAsUser/);
    assert.match(unknown.stdout, /runAsUser: 65532/);
    // Without a restart notify nothing changes there.
    await writeFile(config, CONFIG.replace(/notify:[^]*$/, ''));
    const plain = await runAgent(['inject', '--config', config, '--image', 'example/agent:1', file]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stdout, /shareProcessNamespace/);
  });

  it('run warns at start-up when the pod does not share its process namespace (the agent is in the pid 1 tree), before any rotation', async () => {
    await writeFile(join(root, 'secrets.yaml'), 'app/db: one\n');
    const config = join(root, 'run.yaml');
    await writeFile(config, `source: { type: file, path: secrets.yaml }\noutputDir: ${join(root, 'out')}\nserver: { listen: "" }\n${CONFIG.replace(/^outputDir: .*\n/, '')}`);
    const agent = startAgent(['run', '--config', config]);
    try {
      await agent.waitFor(/first render complete; ready/);
      const warning = jsonLines(agent.output().stderr).find((r) => r.target === 'restart:my-app');
      assert.equal(warning?.level, 'warn', agent.output().stderr);
      assert.match(String(warning?.msg), /^restart notify "restart:my-app" cannot work in this pod: the agent's container is pid 1 of its process namespace, so the pod does not share one .* set `shareProcessNamespace: true`/);
    } finally {
      await stopAgent(agent);
    }
  });

  it('inject --from-eso --restart web: the converted config restarts the app on rotation; env becomes fileKeyRef; the pod shares its namespace', async () => {
    const fixtures = new URL('../fixtures/inject/env/', import.meta.url).pathname;
    const r = await runAgent(['inject', '--from-eso', join(fixtures, 'eso.yaml'), '--restart', 'web', '--image', 'example/agent:1', join(fixtures, 'deployment.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    const [configMap, deployment] = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    assert.deepEqual(parseAllDocuments(configMap?.data['config.yaml'])[0]?.toJS().notify, [{ restart: { process: 'web' } }]);
    const spec = deployment?.spec.template.spec;
    assert.equal(spec.shareProcessNamespace, true);
    assert.ok(JSON.stringify(spec.containers).includes('fileKeyRef'));
    assert.ok(!JSON.stringify(deployment).includes('secretKeyRef'));
    const { Deployment } = await import('kubernetes-models/apps/v1/Deployment');
    new Deployment(deployment).validate();
    // The config it generated passes validate for a Deployment (the ConfigMap's config as the agent reads it).
    const config = join(root, 'from-eso.yaml');
    await writeFile(config, configMap?.data['config.yaml']);
    const v = await runAgent(['validate', '--config', config, '--workload', 'Deployment']);
    assert.equal(v.code, 0, v.stderr);
    // --restart without --from-eso is a usage error that says where the target goes instead.
    const usage = await runAgent(['inject', '--config', config, '--restart', 'web', join(fixtures, 'deployment.yaml')]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--restart goes with --from-eso; with --config, add the restart target to the config/);
  });

  it('validate --workload Job (or CronJob) refuses a restart notify, naming it and its line; other kinds pass', async () => {
    const config = join(root, 'validate.yaml');
    await writeFile(config, CONFIG);
    for (const kind of ['Job', 'cronjob']) {
      const r = await runAgent(['validate', '--config', config, '--workload', kind]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stdout + r.stderr, /validate\.yaml:8: notify\[0\]\.restart: a restart notify cannot serve a (Job|CronJob)/);
    }
    const ok = await runAgent(['validate', '--config', config, '--workload', 'Deployment']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ok \(1 secret\(s\), 1 file\(s\), 1 notify target\(s\), for a Deployment\)/);
    const bad = await runAgent(['validate', '--config', config, '--workload', 'Jobs']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--workload "Jobs" is not a workload kind \(use one of Deployment, StatefulSet/);
  });
});
