// The suites' teardown (test/support/procs.ts: stopAgent, killAgent): after it
// returns, neither the agent nor anything it started is alive, so removing the
// temp dir cannot race with a writer (issue 11, defect 13: `rm` failed with
// ENOTEMPTY right after a SIGKILL while the agent and its exec children still
// wrote into the dir).
//
// The agent's notify target is a loop that keeps (re)creating files in the temp
// dir and ignores SIGTERM: the worst case a teardown meets. Each case removes
// the dir right after the teardown and then checks, independently of the helper
// (by scanning /proc for the dir's path in any command line), that no process
// is left and that the dir stays gone.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgent, type RunningAgent } from '../support/cli.ts';
import { killAgent, stopAgent, type StopResult } from '../support/procs.ts';
import { waitUntil } from '../support/wait.ts';

/** Live processes whose command line mentions `needle`. */
function processesMentioning(needle: string): string[] {
  const hits: string[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${name}/stat`, 'utf8'))) continue;
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(needle)) hits.push(`${name}: ${cmd.slice(0, 120)}`);
    } catch {
      // gone
    }
  }
  return hits;
}

async function agentWithBusyNotify(name: string): Promise<{ dir: string; agent: RunningAgent }> {
  const dir = await mkdtemp(join(tmpdir(), `sa-teardown-${name}-`));
  await writeFile(join(dir, 'secrets.yaml'), 's: "v1"\n');
  // Ignores SIGTERM, forks a writer that keeps recreating files under the temp dir.
  const loop = `trap '' TERM; while :; do mkdir -p ${dir}/junk; date +%s%N >> ${dir}/junk/$$; sleep 0.01; done`;
  await writeFile(
    join(dir, 'config.yaml'),
    `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 100ms }
secrets:
  s: { id: s }
files:
  - path: s
    secret: s
notify:
  - exec: ["/bin/sh", "-c", ${JSON.stringify(loop)}]
    timeout: 1h
server: { listen: "" }
`,
  );
  const agent = startAgent(['run', '--config', join(dir, 'config.yaml')]);
  await agent.waitFor(/first render complete/, 30_000);
  await writeFile(join(dir, 'secrets.yaml'), 's: "v2"\n');
  await waitUntil('the notify loop writing', () => existsSync(join(dir, 'junk')), 30_000);
  return { dir, agent };
}

async function assertTornDown(dir: string, r: StopResult): Promise<void> {
  // rm right away: nothing may still write into the dir.
  await rm(dir, { recursive: true, force: true });
  assert.deepEqual(processesMentioning(dir), [], 'a process of the agent outlived the teardown');
  await sleep(300);
  assert.equal(existsSync(dir), false, 'something recreated the temp dir after the teardown');
  assert.ok(r.code !== null || r.signal !== null, 'the agent exited');
}

describe('teardown of an agent whose exec notify keeps writing into the temp dir', () => {
  it('killAgent (kill -9) leaves no process behind and the dir can be removed at once', async () => {
    const { dir, agent } = await agentWithBusyNotify('kill');
    const r = await killAgent(agent);
    assert.equal(r.signal, 'SIGKILL');
    await assertTornDown(dir, r);
  });

  it('stopAgent (SIGTERM, bounded wait, then SIGKILL of the tree) leaves no process behind', async () => {
    const { dir, agent } = await agentWithBusyNotify('term');
    const r = await stopAgent(agent);
    await assertTornDown(dir, r);
  });

  it('stopAgent after the agent already died still finds what it left (by the tree tag) and removes it', async () => {
    const { dir, agent } = await agentWithBusyNotify('dead');
    agent.child.kill('SIGKILL');
    await agent.exited;
    const r = await stopAgent(agent);
    assert.ok(r.survivors.length > 0, 'the exec loop outlived its agent (nothing can stop that on kill -9)');
    await assertTornDown(dir, r);
  });
});
