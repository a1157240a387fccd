// Metrics with targets: a per-target generation gauge, declared at 0 and forgotten with the target.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { AgentMetrics } from '../../../agent/observe/metrics.ts';

it('declares secrets_agent_files_target_generation_timestamp_seconds per target, sets it on a write of that target, forgets a removed target', async () => {
  const m = new AgentMetrics({ version: 't', processMetrics: false });
  const base = { refresh: { intervalMs: 1000 }, secrets: [], files: [{ path: 'db/k' }, { path: 'api/k' }], notify: [] };
  m.declareConfig({ ...base, targets: ['db', 'api'] });
  let text = await m.metrics();
  assert.match(text, /secrets_agent_files_target_generation_timestamp_seconds\{output_target="db"\} 0/);
  assert.match(text, /secrets_agent_file_renders_total\{file="db\/k",result="success"\} 0/);
  m.targetWritten('db', new Date(5000));
  text = await m.metrics();
  assert.match(text, /secrets_agent_files_target_generation_timestamp_seconds\{output_target="db"\} 5\b/);
  assert.match(text, /secrets_agent_files_target_generation_timestamp_seconds\{output_target="api"\} 0/);
  m.declareConfig({ ...base, targets: ['db'] });
  assert.doesNotMatch(await m.metrics(), /output_target="api"/);
});
