// agent/inject/inject.ts in-process: the target -> mount mapping and the
// ConfigMap's content-hash name (the CLI-level behaviour is test/e2e/inject.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configMapName, envFilePath, esoTargets, targetMount } from '../../../agent/inject/inject.ts';

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
