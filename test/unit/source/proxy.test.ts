// egressProxyEnv / translateNoProxy: NO_PROXY with curl/Go semantics in Node's syntax,
// the always-direct addresses, and a proxy URL never shown with its credentials.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ALWAYS_DIRECT, egressProxyEnv, redactProxy, translateNoProxy } from '../../../agent/source/proxy.ts';

describe('egress proxy settings', () => {
  it('translates NO_PROXY entries: names cover subdomains, CIDR becomes a range, IPv6 loses brackets, * stays', () => {
    assert.deepEqual(translateNoProxy('Example.com, .corp.local,10.0.0.0/8 [fd00::1],*.x.y,h:80,1.2.3.4,*'), [
      'example.com', '*.example.com', 'corp.local', '*.corp.local', '10.0.0.0-10.255.255.255', 'fd00::1', '*.x.y', 'h:80', '1.2.3.4', '*',
    ]);
    assert.deepEqual(translateNoProxy('192.168.1.77/24'), ['192.168.1.0-192.168.1.255']);
  });

  it('adds loopback, Pod Identity, ECS and IMDS to every NO_PROXY; lower case wins; no proxy, no proxyEnv', () => {
    assert.equal(egressProxyEnv({}), undefined);
    const e = egressProxyEnv({ HTTPS_PROXY: 'http://upper:3128', https_proxy: 'http://lower:3128', NO_PROXY: 'a.b' });
    assert.equal(e?.HTTPS_PROXY, 'http://lower:3128');
    assert.equal(e?.NO_PROXY, ['a.b', '*.a.b', ...ALWAYS_DIRECT].join(','));
    for (const a of ['169.254.170.23', 'fd00:ec2::23', '169.254.170.2', '127.0.0.0-127.255.255.255', 'localhost', '::1']) assert.ok(ALWAYS_DIRECT.includes(a), a);
  });

  it('refuses a proxy value that is not an http(s) URL, without showing its credentials', () => {
    assert.throws(() => egressProxyEnv({ HTTPS_PROXY: 'user:s3cret@proxy:3128' }), (err: Error) => /HTTPS_PROXY/.test(err.message) && !err.message.includes('s3cret'));
    assert.equal(redactProxy('http://user:s3cret@proxy:3128'), 'http://proxy:3128');
  });
});
