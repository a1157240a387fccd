// The monitoring assets operators apply on day one (k8s-examples/monitoring/):
// the alert rules are checked and unit-tested by the real promtool, the
// dashboard's queries are parsed by promtool and may only use metrics the agent
// exports, and the scrape manifests agree with the agent's port and config.
import assert from 'node:assert/strict';
import { promtool, runPromtool } from '../support/promtool.ts';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { parseConfig } from '../../agent/config/index.ts';
import { AgentMetrics } from '../../agent/observe/metrics.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const MONITORING = join(ROOT, 'k8s-examples', 'monitoring');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: Rule[];
}

/**
 * The metric names a PromQL expression selects. Strips strings, label matchers,
 * ranges, grouping clauses and Grafana variables, then keeps identifiers that
 * are neither functions nor keywords.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'Inf', 'NaN']);
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)) {
    if (!keywords.has(m[1]!)) names.add(m[1]!);
  }
  return [...names];
}

/** Every series name the agent's registry can expose (histograms with their suffixes). */
async function exportedNames(): Promise<Set<string>> {
  const m = new AgentMetrics({ version: 'test' });
  const names = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(metric.name + s);
  }
  return names;
}

void describe('metricNames (the helper the checks below rely on)', () => {
  void it('finds selected metrics and ignores functions, labels, ranges, grouping and variables', () => {
    assert.deepEqual(
      metricNames('histogram_quantile(0.9, sum by (le, job) (rate(a_bucket{x="y", z=~"$ns"}[$__rate_interval]))) > 3 * b and on (job) c unless d offset 5m'),
      ['a_bucket', 'b', 'c', 'd'],
    );
    assert.deepEqual(metricNames('time() - 1e9'), []);
  });
});

void describe('prometheusrule.yaml', () => {
  let dir: string;
  let groups: RuleGroup[];
  const alerts = (): Rule[] => groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-monitoring-'));
    const doc = parse(await readFile(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as { kind: string; apiVersion: string; spec: { groups: RuleGroup[] } };
    assert.equal(doc.kind, 'PrometheusRule');
    assert.equal(doc.apiVersion, 'monitoring.coreos.com/v1');
    groups = doc.spec.groups;
    // promtool resolves the unit tests' rule_files (rules.yaml) relative to the test file.
    await writeFile(join(dir, 'rules.yaml'), stringify({ groups }));
    await copyFile(join(MONITORING, 'tests', 'rules.test.yaml'), join(dir, 'rules.test.yaml'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void it('has every alert the issue asks for, each with a severity, summary, description and runbook hint', () => {
    const names = alerts().map((r) => r.alert);
    for (const name of [
      'SecretsAgentRefreshFailing',
      'SecretsAgentFilesStale',
      'SecretsAgentNotifyFailing',
      'SecretsAgentCredentialsFailing',
      'SecretsAgentCredentialsExpiringSoon',
      'SecretsAgentNotReady',
      'SecretsAgentSecretNotRotated',
      'SecretsAgentSecretDeletionScheduled',
    ]) {
      assert.ok(names.includes(name), name);
    }
    for (const rule of alerts()) {
      assert.match(rule.labels?.severity ?? '', /^(critical|warning|info)$/, `${rule.alert}: severity`);
      for (const key of ['summary', 'description', 'runbook']) assert.ok(rule.annotations?.[key], `${rule.alert}: annotations.${key}`);
    }
  });

  void it('when checked by promtool, the rule groups are valid', (t) => {
    const p = promtool();
    if (!p.ok) return t.skip(p.reason);
    const r = runPromtool(['check', 'rules', 'rules.yaml'], { cwd: dir });
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, new RegExp(`SUCCESS: ${alerts().length} rules found`));
  });

  void it('when promtool runs the unit tests, every alert fires in one case and stays silent in another', async (t) => {
    const tests = parse(await readFile(join(dir, 'rules.test.yaml'), 'utf8')) as {
      tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((g) => g.alert_rule_test ?? []);
    for (const rule of alerts()) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${rule.alert}: no case where it fires`);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${rule.alert}: no case where it stays silent`);
    }
    const p = promtool();
    if (!p.ok) return t.skip(p.reason);
    const r = runPromtool(['test', 'rules', 'rules.test.yaml'], { cwd: dir });
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });

  void it('uses only metrics the agent exports', async () => {
    const known = await exportedNames();
    for (const rule of alerts()) {
      const names = metricNames(rule.expr);
      assert.ok(names.length > 0, `${rule.alert}: no metric found in its expression`);
      for (const name of names) assert.ok(known.has(name), `${rule.alert}: unknown metric ${name}`);
    }
  });
});

void describe('grafana-dashboard.json', () => {
  interface Target {
    expr: string;
    refId: string;
    datasource?: { type: string; uid: string };
  }
  interface Panel {
    type: string;
    title: string;
    id: number;
    gridPos: { x: number; y: number; w: number; h: number };
    targets?: Target[];
    datasource?: { uid: string };
  }
  let dashboard: {
    title: string;
    uid: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: { name: string; type: string; query: string | { query: string }; datasource?: { uid: string } }[] };
  };
  const targets = (): { panel: string; expr: string }[] =>
    dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

  before(async () => {
    dashboard = JSON.parse(await readFile(join(MONITORING, 'grafana-dashboard.json'), 'utf8')) as typeof dashboard;
  });

  void it('is a Grafana JSON model with a Prometheus datasource variable used by every panel and query', () => {
    assert.equal(typeof dashboard.title, 'string');
    assert.equal(typeof dashboard.uid, 'string');
    assert.ok(dashboard.schemaVersion >= 36);
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.equal(ds?.name, 'datasource');
    assert.equal(ds?.query, 'prometheus');
    const ids = new Set<number>();
    for (const p of dashboard.panels) {
      assert.ok(!ids.has(p.id), `duplicate panel id ${p.id}`);
      ids.add(p.id);
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title}: wider than the grid`);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      assert.ok((p.targets ?? []).length > 0, `${p.title}: no query`);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}', `${p.title} ${t.refId}`);
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) assert.equal(v.datasource?.uid, '${datasource}', v.name);
  });

  void it('shows freshness, rotations, errors, AWS calls and latency, notifications, memory and CPU', () => {
    const all = targets()
      .map((t) => t.expr)
      .join('\n');
    for (const needle of [
      'secrets_agent_secret_last_success_timestamp_seconds',
      'secrets_agent_secret_version_changes_total',
      'secrets_agent_secret_checks_total',
      'secrets_agent_aws_requests_total',
      'histogram_quantile(0.99',
      'secrets_agent_notify_total',
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
    ]) {
      assert.ok(all.includes(needle), needle);
    }
  });

  void it('queries only metrics the agent exports, in variables too', async () => {
    const known = await exportedNames();
    for (const { panel, expr } of targets()) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${panel}: no metric in ${expr}`);
      for (const name of names) assert.ok(known.has(name), `${panel}: unknown metric ${name} in ${expr}`);
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const q = typeof v.query === 'string' ? v.query : v.query.query;
      const m = /^label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(q);
      assert.ok(m, `${v.name}: ${q}`);
      assert.ok(known.has(m[1]!), `${v.name}: unknown metric ${m[1]}`);
    }
  });

  void it('when promtool parses every query (variables substituted), they are valid PromQL', async (t) => {
    const p = promtool();
    if (!p.ok) return t.skip(p.reason);
    const dir = await mkdtemp(join(tmpdir(), 'sa-dashboard-'));
    try {
      const rules = targets().map(({ expr }, i) => ({
        record: `dashboard:query_${i}`,
        expr: expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$\w+/g, '.*'),
      }));
      await writeFile(join(dir, 'dashboard.rules.yaml'), stringify({ groups: [{ name: 'dashboard', rules }] }));
      const r = runPromtool(['check', 'rules', 'dashboard.rules.yaml'], { cwd: dir });
      assert.equal(r.status, 0, r.output);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

interface Container {
  name: string;
  restartPolicy?: string;
  ports?: { name: string; containerPort: number }[];
  startupProbe?: { httpGet: { path: string } };
  livenessProbe?: { httpGet: { path: string } };
  volumeMounts?: { name: string }[];
}
interface K8sObject {
  kind: string;
  apiVersion: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: {
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: { initContainers: Container[]; containers: Container[]; volumes: { name: string; configMap?: { name: string } }[] };
    };
  };
}

void describe('scrape manifests', () => {
  void it('podmonitor.yaml scrapes the port named metrics of the secrets-agent container only', async () => {
    const doc = parse(await readFile(join(MONITORING, 'podmonitor.yaml'), 'utf8')) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: { selector: object; podMetricsEndpoints: { port: string; path: string; relabelings?: { sourceLabels: string[]; regex: string; action: string }[] }[] };
    };
    assert.equal(doc.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(doc.kind, 'PodMonitor');
    assert.ok(doc.metadata.name);
    assert.ok(doc.spec.selector);
    const [endpoint] = doc.spec.podMetricsEndpoints;
    assert.equal(endpoint?.port, 'metrics');
    assert.equal(endpoint?.path, '/metrics');
    assert.ok(
      endpoint?.relabelings?.some((r) => r.action === 'keep' && r.sourceLabels.includes('__meta_kubernetes_pod_container_name') && r.regex === 'secrets-agent'),
      'keeps only the secrets-agent container',
    );
  });

  void it('scrape-annotations.yaml is a valid Deployment whose annotations, port, probes and agent config agree', async () => {
    const docs = parseAllDocuments(await readFile(join(MONITORING, 'scrape-annotations.yaml'), 'utf8'));
    for (const d of docs) assert.deepEqual(d.errors, []);
    const objects = docs.map((d) => d.toJS() as K8sObject);
    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    assert.equal(deployment.apiVersion, 'apps/v1');
    const spec = deployment.spec!;
    const template = spec.template;
    for (const [k, v] of Object.entries(spec.selector.matchLabels)) assert.equal(template.metadata.labels[k], v, `selector ${k}`);
    const ann = template.metadata.annotations;
    assert.equal(ann['prometheus.io/scrape'], 'true');
    assert.equal(ann['prometheus.io/path'], '/metrics');

    const agent = template.spec.initContainers.find((c) => c.name === 'secrets-agent');
    assert.ok(agent, 'the agent runs as a native sidecar named secrets-agent');
    assert.equal(agent.restartPolicy, 'Always');
    const port = agent.ports?.find((p) => p.name === 'metrics');
    assert.equal(String(port?.containerPort), ann['prometheus.io/port']);
    assert.equal(agent.startupProbe?.httpGet.path, '/readyz');
    assert.equal(agent.livenessProbe?.httpGet.path, '/healthz');
    const volumes = new Set(template.spec.volumes.map((v) => v.name));
    for (const c of [...template.spec.initContainers, ...template.spec.containers]) {
      for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name}: volume ${m.name}`);
    }

    const configMapName = template.spec.volumes.find((v) => v.configMap)?.configMap?.name;
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === configMapName);
    assert.ok(configMap?.data?.['config.yaml'], 'the ConfigMap the pod mounts holds config.yaml');
    // The agent's own config parser: the example must be a config the agent accepts.
    const config = parseConfig(configMap.data['config.yaml'], 'scrape-annotations.yaml#config.yaml', '/etc/secrets-agent');
    assert.equal(config.server.listen.split(':').at(-1), ann['prometheus.io/port']);
  });
});

void describe('docs/metrics.md: metrics and alerts', () => {
  void it('documents every metric the agent exports and every alert', async () => {
    const doc = await readFile(join(ROOT, 'docs', 'metrics.md'), 'utf8');
    const m = new AgentMetrics({ version: 'test', processMetrics: false });
    for (const metric of await m.registry.getMetricsAsJSON()) assert.ok(doc.includes(`\`${metric.name}\``), metric.name);
    const rules = parse(await readFile(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as { spec: { groups: RuleGroup[] } };
    for (const rule of rules.spec.groups.flatMap((g) => g.rules)) if (rule.alert) assert.ok(doc.includes(rule.alert), rule.alert);
  });
});
