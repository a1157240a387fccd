import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { envKeyProblem, envValueProblem, formatEnvFile, type EnvSyntax } from '../../../agent/render/envfile.ts';
import { compileFiles, renderFiles } from '../../../agent/render/render.ts';
import { kubeletParseEnv, type KubeletResult } from '../../support/kubelet-env.ts';
import { jsonValue, stringValue, testConfig } from '../../fixtures/render/config.ts';

// The kubelet's own table (pkg/kubelet/util/env/env_util_test.go, TestParseEnv,
// kubernetes/kubernetes at fa7ba8e2f963aad48acbd0aee416f9743af443f5, the
// quoted syntax of 1.35+): [name, file, key, value | {error: part of the message}].
// Go raw strings keep backslashes: String.raw does the same here.
type Case = [string, string, string, string | { error: string }];
const KUBELET_QUOTED: Case[] = [
  ['ignore leading whitespace', "   KEY1='val1'\n\t\tKEY2='val2'\nKEY3='val3'\n", 'KEY2', 'val2'],
  ['ignore blank and comment lines', "# comment\n\nKEY1='foo'\n   # another comment\n\nKEY2='bar'\n", 'KEY2', 'bar'],
  ['whitespace around = and not allowed', "KEY1 = 'val1'\nKEY2=   'val2'\nKEY3='val3'\n", 'KEY2', { error: "whitespace before '=' is not allowed" }],
  ['key not found returns empty', "KEY1='foo'\nKEY2='bar'\n", 'KEY3', ''],
  ['value with embedded #', "KEY1='foo#notcomment'\nKEY2='bar'\n", 'KEY1', 'foo#notcomment'],
  ['key with whitespace (should error)', "KEY1 ='foo'\nKEY2='bar'\n", 'KEY1', { error: "whitespace before '=' is not allowed" }],
  ['value with leading and trailing whitespace', "KEY1='   foo bar   '\nKEY2='bar'\n", 'KEY1', '   foo bar   '],
  ['empty value', "KEY1='foo'\nKEY2=''\nKEY3='bar'\n", 'KEY2', ''],
  ['key is empty (should error)', "='foo'\nKEY2='bar'\n", 'KEY2', { error: 'invalid environment variable format' }],
  ['multiple = in value', "KEY1='foo=bar=baz'\nKEY2='bar'\n", 'KEY1', 'foo=bar=baz'],
  ['comment after key value pair', "KEY1='foo'\nKEY2='bar' # comment\n", 'KEY2', 'bar'],
  ['missing key triggers error with line number', "='foo'\nKEY2='bar'", 'KEY2', { error: 'at line 1' }],
  ['value contains $VAR, should not expand', "KEY1='$VAR'\nKEY2='bar'", 'KEY1', '$VAR'],
  ['value contains mixed shell variable syntax, should not expand', "KEY1='foo$BAR-${HOME}_$'\nKEY2='bar'", 'KEY1', 'foo$BAR-${HOME}_$'],
  ['invalid line triggers error with line number', "KEY1='foo'\nINVALID_LINE\nKEY2='bar'\n", 'KEY2', { error: 'at line 2' }],
  ['unquoted value triggers error', "KEY1='foo'\nKEY2=bar\nKEY3='baz'\n", 'KEY2', { error: 'value must be enclosed in single quotes' }],
  ['double quoted value triggers error', "KEY1='foo'\nKEY2=\"bar\"\nKEY3='baz'\n", 'KEY2', { error: 'value must be enclosed in single quotes' }],
  ['value with multiple adjacent quoted strings', "KEY1='foo''bar'", 'KEY1', { error: 'unexpected content after closing quote' }],
  ['unclosed single quote triggers error', "KEY1='foo'\nKEY2='bar\nKEY3='baz'\n", 'KEY2', { error: 'unexpected content after closing quote' }],
  ['content after closing quote triggers error', "KEY1='foo'\nKEY2='bar'baz\nKEY3='baz'\n", 'KEY2', { error: 'unexpected content after closing quote' }],
  ['quotes preserve all literal content including spaces', "KEY1='  foo  bar  '\nKEY2='bar'\n", 'KEY1', '  foo  bar  '],
  ['special characters in value', "KEY1='!@#$%^&*()_+-=[]{}|;:,.<>?/'\nKEY2='bar'\n", 'KEY1', '!@#$%^&*()_+-=[]{}|;:,.<>?/'],
  ['newlines and tabs in value', String.raw`KEY1='line1\nline2\tline3'` + "\nKEY2='bar'\n", 'KEY1', String.raw`line1\nline2\tline3`],
  ['unicode characters in value', "KEY1='中文 Español Français 🌍'\nKEY2='bar'\n", 'KEY1', '中文 Español Français 🌍'],
  ['backslashes in value', String.raw`KEY1='path\\to\\file'` + "\nKEY2='bar'\n", 'KEY1', String.raw`path\\to\\file`],
  ['single quotes within value quotes', String.raw`KEY1='value with \'nested\' quotes'` + "\nKEY2='bar'\n", 'KEY1', { error: 'unexpected content after closing quote' }],
  ['double quotes within value quotes', "KEY1='value with \"nested\" quotes'\nKEY2='bar'\n", 'KEY1', 'value with "nested" quotes'],
  ['only whitespace in quotes', String.raw`KEY1='   '` + '\n' + String.raw`KEY2='\t\n'` + "\nKEY3='bar'\n", 'KEY1', '   '],
  ['complex JSON-like value', `KEY1='{"name": "test", "value": 123, "nested": {"key": "val"}}'\nKEY2='bar'\n`, 'KEY1', '{"name": "test", "value": 123, "nested": {"key": "val"}}'],
  ['URL with special characters', "KEY1='https://example.com/path?query=value&another=param'\nKEY2='bar'\n", 'KEY1', 'https://example.com/path?query=value&another=param'],
  ['multi-line value with spaces', "KEY1='line one\n  line two with spaces\n    line three with more spaces'\nKEY2='bar'\n", 'KEY1', 'line one\n  line two with spaces\n    line three with more spaces'],
  ['multi-line value with empty lines', "KEY1='line1\n\nline3 after empty line\n\nline5 after another empty'\nKEY2='bar'\n", 'KEY1', 'line1\n\nline3 after empty line\n\nline5 after another empty'],
  ['multi-line value with trailing spaces', "KEY1='line1\nline2 with trailing spaces\nline3   '\nKEY2='bar'\n", 'KEY1', 'line1\nline2 with trailing spaces\nline3   '],
  ['multi-line value with JSON content', `KEY1='{\n  "name": "test",\n  "nested": {\n    "array": [1, 2, 3]\n  }\n}'\nKEY2='bar'\n`, 'KEY1', '{\n  "name": "test",\n  "nested": {\n    "array": [1, 2, 3]\n  }\n}'],
];

// The 1.34 (alpha) parser's rules, from its doc comment and code
// (env_util.go at c97061155db7ff2753c493bb627883d130512d54).
const KUBELET_PLAIN: Case[] = [
  ['leading whitespace ignored', '   KEY1=val1\n\tKEY2=val2\n', 'KEY2', 'val2'],
  ['blank and comment lines ignored', '# c\n\n   # c\nKEY=v\n', 'KEY', 'v'],
  ['whitespace around = and at the end ignored', 'KEY  =   v a l   \n', 'KEY', 'v a l'],
  ['# inside a value is kept', 'KEY=a#b\n', 'KEY', 'a#b'],
  ['quotes are kept as they are', "KEY='v'\n", 'KEY', "'v'"],
  ['a trailing backslash continues the line, joined with one space', 'KEY=a  \\\n   b\n', 'KEY', 'a b'],
  ['a blank line in a continuation is an error', 'KEY=a\\\n\nOTHER=b\n', 'KEY', { error: 'blank line in continuation' }],
  ['a comment in a continuation is an error', 'KEY=a\\\n# c\n', 'KEY', { error: 'comment in continuation' }],
  ['an unfinished continuation at the end is an error', 'KEY=a\\', 'KEY', { error: 'unfinished line continuation' }],
  ['a line without = is an error', 'NOPE\nKEY=v\n', 'KEY', { error: 'at line 1' }],
  ['an empty name is an error', '=v\nKEY=v\n', 'KEY', { error: 'at line 1' }],
  ['the first of two lines with the key wins', 'KEY=one\nKEY=two\n', 'KEY', 'one'],
];

function check(cases: Case[], syntax: EnvSyntax): void {
  for (const [name, file, key, want] of cases) {
    it(name, () => {
      const got = kubeletParseEnv(file, key, syntax);
      if (typeof want === 'string') assert.deepEqual(got, { value: want });
      else assert.ok('error' in got && got.error.includes(want.error), `want an error with ${JSON.stringify(want.error)}, got ${JSON.stringify(got)}`);
    });
  }
}

describe('test support: the kubelet env file reader, against the kubelet\'s documented cases', () => {
  describe('quoted (1.35+: env_util_test.go TestParseEnv)', () => check(KUBELET_QUOTED, 'quoted'));
  describe('plain (1.34 alpha: env_util.go rules)', () => check(KUBELET_PLAIN, 'plain'));
  it('a line longer than bufio.Scanner reads (64 KiB) makes the file unreadable', () => {
    const got: KubeletResult = kubeletParseEnv(`KEY='${'x'.repeat(70_000)}'\n`, 'KEY', 'quoted');
    assert.ok('error' in got);
  });
  it('a CR before a line break is dropped (ScanLines)', () => {
    assert.deepEqual(kubeletParseEnv("KEY='a\r\nb'\r\n", 'KEY', 'quoted'), { value: 'a\nb' });
  });
});

// Values from every corner of what ESO can put in a Secret: JSON, =, #, $, quotes, spaces, unicode.
const HARD = ['{"user":"app","pass":"p=a#s$s"}', 'a=b=c', '#not a comment', '$HOME ${X} $(Y) `z`', '"double"', '  spaces inside  ', 'ünïcødé 🌍 中文', 'back\\slash', 'line1\nline2', 'tab\there'];

describe('env file writer: what the kubelet reads back is exactly the value', () => {
  for (const syntax of ['quoted', 'plain'] as const) {
    it(`${syntax}: every value the writer accepts reads back byte for byte, each key its own`, () => {
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,20}$/), fc.oneof(fc.string({ unit: 'grapheme' }), fc.constantFrom(...HARD))), { minLength: 1, maxLength: 6 }), (pairs) => {
          const entries = [...new Map(pairs.map(([k, v]) => [k, Buffer.from(v, 'utf8')]))].filter(([, v]) => envValueProblem(v, syntax) === undefined);
          const file = formatEnvFile(entries, syntax);
          for (const [k, v] of entries) assert.deepEqual(kubeletParseEnv(file, k, syntax), { value: v.toString('utf8') }, k);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('quoted carries JSON, =, #, $, double quotes, spaces, unicode, backslashes and newlines', () => {
    for (const v of HARD) assert.equal(envValueProblem(Buffer.from(v), 'quoted'), undefined, v);
  });

  it('refuses what a syntax cannot carry, with a reason that never shows the value', () => {
    const canary = 'CANARY-7f3a';
    const refused: [EnvSyntax, string, RegExp][] = [
      ['quoted', `${canary}'s`, /single quote/],
      ['quoted', `${canary}\r\nx`, /CR LF/],
      ['quoted', `${canary}\0`, /NUL/],
      ['quoted', '', /empty/],
      ['plain', `${canary}\nx`, /line break/],
      ['plain', ` ${canary}`, /whitespace/],
      ['plain', `${canary}\u00a0`, /whitespace/],
      ['plain', `${canary}\\`, /backslash/],
    ];
    for (const [syntax, value, why] of refused) {
      const problem = envValueProblem(Buffer.from(value), syntax);
      assert.match(problem ?? '', why, `${syntax} ${JSON.stringify(value)}`);
      assert.ok(!problem!.includes(canary));
    }
    assert.match(envValueProblem(Buffer.from([0x66, 0xff]), 'quoted') ?? '', /UTF-8/);
  });

  it('keys: printable ASCII without space and "=", not starting with "#", at most 128 characters', () => {
    assert.equal(envKeyProblem('DB_PASSWORD'), undefined);
    assert.equal(envKeyProblem('db-password.v2'), undefined);
    for (const bad of ['', 'A B', 'A=B', '#A', 'é', 'x'.repeat(129)]) assert.ok(envKeyProblem(bad), bad);
  });
});

describe('files[].envFile: the env file of a directory', () => {
  it('one line per file directly in the directory, ESO\'s bytes for each (the file\'s bytes), sub-directories and env files left out', async () => {
    const config = testConfig({
      secrets: ['db'],
      files: [
        { path: 'creds/DB_PASSWORD', secret: 'db', key: 'password' },
        { path: 'creds/DB_JSON', secret: 'db' },
        { path: 'creds/sub/x', secret: 'db', key: 'password' },
        { path: 'other', secret: 'db' },
        { path: 'creds/creds.env', envFile: 'creds' },
      ],
    });
    const value = jsonValue('db', { password: "p=a#s$s \"q\" ü" });
    const outcome = await renderFiles(config, await compileFiles(config), new Map([['db', value]]));
    assert.deepEqual(outcome.errors, []);
    const env = outcome.files.find((f) => f.path === 'creds/creds.env')!;
    assert.deepEqual(kubeletParseEnv(env.content, 'DB_PASSWORD', 'quoted'), { value: 'p=a#s$s "q" ü' });
    assert.deepEqual(kubeletParseEnv(env.content, 'DB_JSON', 'quoted'), { value: value.secretString });
    assert.deepEqual(kubeletParseEnv(env.content, 'x', 'quoted'), { value: '' });
    assert.deepEqual(kubeletParseEnv(env.content, 'creds.env', 'quoted'), { value: '' });
  });

  it('a value the syntax cannot carry fails the env file only, naming the key and why, never the value', async () => {
    const canary = "CANARY-9d2e'quote";
    const config = testConfig({
      secrets: ['db'],
      files: [
        { path: 'DB_PASSWORD', secret: 'db' },
        { path: 'app.env', envFile: '.' },
      ],
    });
    const outcome = await renderFiles(config, await compileFiles(config), new Map([['db', stringValue('db', canary)]]));
    assert.deepEqual(outcome.files.map((f) => f.path), ['DB_PASSWORD']);
    assert.equal(outcome.errors.length, 1);
    assert.match(outcome.errors[0]!.message, /key "DB_PASSWORD" contains a single quote/);
    assert.ok(!outcome.errors[0]!.message.includes('CANARY'));
  });
});
