// value.ts: the bytes of secret/eachKey files by External Secrets Operator's
// rules (each case names the ESO source it mirrors).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeBytes, gjsonString, goFloat, lookup, parseJson } from '../../../agent/render/value.ts';

const at = (json: string, key: string): string | undefined => {
  const root = parseJson(json)!;
  const node = lookup(root, key);
  return node === undefined ? undefined : gjsonString(json, node);
};

describe('key (ESO property: escapeDotsIfRequired + gjson.Get, secretsmanager.go:487-521)', () => {
  it('tries the literal key first, then the dotted path; a number indexes an array', () => {
    const json = '{"a.b": "literal", "a": {"b": "nested", "c": [10, {"d": "deep"}]}}';
    assert.equal(at(json, 'a.b'), 'literal');
    assert.equal(at(json, 'a.c.1.d'), 'deep');
    assert.equal(at(json, 'a.x'), undefined);
    assert.equal(at(json, 'a\\.b'), 'literal');
  });
  it('writes gjson Result.String(): JSON as stored, null as nothing, integers as written, other numbers without exponent', () => {
    const json = '{"o": { "x" : 1 }, "n": null, "big": 12345678901234567890, "f": 1.50, "e": 1e3, "t": true}';
    assert.equal(at(json, 'o'), '{ "x" : 1 }');
    assert.equal(at(json, 'n'), '');
    assert.equal(at(json, 'big'), '12345678901234567890');
    assert.equal(at(json, 'f'), '1.5');
    assert.equal(at(json, 'e'), '1000');
    assert.equal(at(json, 't'), 'true');
    assert.equal(goFloat(1e-7), '0.0000001');
    assert.equal(goFloat(1.5e21), '1500000000000000000000');
  });
});

describe('decode (ESO decodingStrategy, runtime/decoding/decoding.go:41-73)', () => {
  const d = (s: string, how: 'none' | 'base64' | 'base64url' | 'auto'): string => {
    const out = decodeBytes(Buffer.from(s, 'latin1'), how);
    return typeof out === 'string' ? 'ERROR' : out.toString('latin1');
  };
  it('base64 is Go StdEncoding: padded, CR/LF ignored, URL characters refused', () => {
    assert.equal(d('aGVs\r\nbG8=', 'base64'), 'hello');
    assert.equal(d('aGVsbG8', 'base64'), 'ERROR');
    assert.equal(d('-_8=', 'base64'), 'ERROR');
    assert.equal(d('', 'base64'), '');
  });
  it('base64url is Go URLEncoding: padded, URL alphabet', () => {
    assert.equal(d('-_8=', 'base64url'), '\xfb\xff');
    assert.equal(d('+/8=', 'base64url'), 'ERROR');
  });
  it('auto: base64, else base64url, else the bytes as they are (a plain word that happens to be base64 is decoded, as ESO does)', () => {
    assert.equal(d('aGVsbG8=', 'auto'), 'hello');
    assert.equal(d('-_8=', 'auto'), '\xfb\xff');
    assert.equal(d('not base64!', 'auto'), 'not base64!');
    assert.equal(d('abcd', 'auto'), Buffer.from('abcd', 'base64').toString('latin1'));
  });
});
