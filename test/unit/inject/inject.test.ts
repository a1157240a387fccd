// agent/inject/inject.ts in-process: the target -> mount mapping, the
// ConfigMap's content-hash name, env precedence (the CLI-level behaviour is test/e2e/inject.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { configMapName, envFilePath, esoTargets, inject, targetMount } from '../../../agent/inject/inject.ts';

describe('inject: targets and names', () => {
  it('one target is the whole volume; several are mounted by subPath, one per target', () => {
    assert.deepEqual(targetMount('db', [{ name: 'db' }]), {});
    assert.deepEqual(targetMount('db', [{ name: 'db', namespace: 'a' }, { name: 'db', namespace: 'b' }]), {});
    assert.deepEqual(targetMount('api', [{ name: 'db' }, { name: 'api' }]), { subPath: 'api' });
  });

  it('the ConfigMap name follows its content, not the key order', () => {
    const a = configMapName({ 'config.yaml': 'x', 't.liquid': 'y' });
    assert.match(a, /^secrets-agent-config-[0-9a-f]{10}$/);
    assert.equal(configMapName({ 't.liquid': 'y', 'config.yaml': 'x' }), a);
    assert.notEqual(configMapName({ 'config.yaml': 'x2', 't.liquid': 'y' }), a);
  });

  it('an ExternalSecret\'s target is spec.target.name, else its own name', () => {
    const text = 'kind: ExternalSecret\nmetadata: { name: a, namespace: n }\nspec: { target: { name: t } }\n---\nkind: ExternalSecret\nmetadata: { name: b }\n---\nkind: SecretStore\nmetadata: { name: s }\n';
    assert.deepEqual(esoTargets([text]), [{ name: 't', namespace: 'n', keys: [] }, { name: 'b', keys: [] }]);
  });

  it('a target\'s keys: data[].secretKey and the template\'s keys (Replace: those alone; Merge: both); unknown offline with dataFrom or templateFrom', () => {
    const es = (spec: string): string => `kind: ExternalSecret\nmetadata: { name: t }\nspec: ${spec}\n`;
    const keys = (spec: string): readonly string[] | undefined => esoTargets([es(spec)])[0]!.keys;
    assert.deepEqual(keys('{ data: [{ secretKey: A }, { secretKey: B }] }'), ['A', 'B']);
    assert.deepEqual(keys('{ data: [{ secretKey: A }], target: { template: { data: { T: x } } } }'), ['T']);
    assert.deepEqual(keys('{ data: [{ secretKey: A }], target: { template: { mergePolicy: Merge, data: { T: x, A: y } } } }'), ['A', 'T']);
    assert.equal(keys('{ dataFrom: [{ extract: { key: k } }] }'), undefined);
    assert.equal(keys('{ data: [{ secretKey: A }], dataFrom: [{ extract: { key: k } }], target: { template: { mergePolicy: Merge, data: { T: x } } } }'), undefined);
    assert.deepEqual(keys('{ dataFrom: [{ extract: { key: k } }], target: { template: { data: { T: x } } } }'), ['T']);
    assert.equal(keys('{ data: [{ secretKey: A }], target: { template: { templateFrom: [{ configMap: { name: c } }] } } }'), undefined);
  });

  it('the env file of a target: <target>/<target>.env, from the name alone', () => {
    assert.equal(envFilePath('db-credentials'), 'db-credentials/db-credentials.env');
  });
});

describe('inject: env of a replaced Secret keeps Kubernetes\' precedence (mutatePodSpec through inject)', () => {
  const opts = {
    image: 'img',
    configData: { 'config.yaml': 'outputDir: /run/secrets/app\n' },
    outputDir: '/run/secrets/app',
    port: 9102,
    targets: [
      { name: 'a', keys: ['X', 'Y'] },
      { name: 'b', keys: ['Y', 'Z'] },
    ],
  };
  const pod = (container: string): string => `apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n  containers:\n    - ${container}\n`;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const web = (text: string): any => (parseAllDocuments(text)[1]!.toJS() as { spec: { containers: unknown[] } }).spec.containers[0];
  const ref = (t: string, key: string, optional?: boolean) => ({ fileKeyRef: { volumeName: 'secrets-agent-files', path: `${t}/${t}.env`, key, ...(optional === undefined ? {} : { optional }) } });

  it('a later envFrom wins over an earlier one, env wins over both, prefix and optional are kept', () => {
    const r = inject([{ file: 'p.yaml', text: pod('{ name: web, image: i, envFrom: [{ secretRef: { name: a } }, { prefix: P_, secretRef: { name: b, optional: true } }, { secretRef: { name: b } }], env: [{ name: X, value: own }, { name: Q, valueFrom: { secretKeyRef: { name: a, key: Y, optional: false } } }] }') }], opts);
    assert.deepEqual(r.diagnostics.filter((d) => d.severity !== 'note'), []);
    const c = web(r.output!);
    assert.equal(c.envFrom, undefined);
    assert.equal(c.volumeMounts, undefined);
    assert.deepEqual(c.env, [
      // Y: a's, then b's (the later envFrom): one entry, b's. X: set by env itself, so none made.
      { name: 'P_Y', valueFrom: ref('b', 'Y', true) },
      { name: 'P_Z', valueFrom: ref('b', 'Z', true) },
      { name: 'Y', valueFrom: ref('b', 'Y') },
      { name: 'Z', valueFrom: ref('b', 'Z') },
      { name: 'X', value: 'own' },
      { name: 'Q', valueFrom: ref('a', 'Y', false) },
    ]);
  });

  it('an envFrom of another source after a replaced one is kept and noted (env now wins over it); injecting the output again changes nothing', () => {
    const r = inject([{ file: 'p.yaml', text: pod('{ name: web, image: i, envFrom: [{ secretRef: { name: a } }, { configMapRef: { name: cm } }] }') }], opts);
    const c = web(r.output!);
    assert.deepEqual(c.envFrom, [{ configMapRef: { name: 'cm' } }]);
    assert.deepEqual(c.env.map((e: { name: string }) => e.name), ['X', 'Y']);
    assert.ok(r.diagnostics.some((d) => d.severity === 'note' && /envFrom entry 1 comes after an envFrom of a Secret the agent replaces/.test(d.message)));
    const again = inject([{ file: 'p.yaml', text: r.output! }], opts);
    assert.equal(again.output, r.output);
  });
});
