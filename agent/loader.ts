// The start of dist/secrets-agent.mjs: loads the agent's code (agent/main.ts,
// bundled by scripts/build.ts and appended to this file after a marker line,
// every line commented out) through vm.Script with a V8 code cache, when a
// matching one exists. Outside the agent's layering: it imports no agent module
// and only node built-ins, and runs nothing of the agent before main.ts's first
// statement (the signal guard, agent/signals.ts).
//
// Why: Node's own compile cache (NODE_COMPILE_CACHE) holds only the code V8
// compiles eagerly, the top level; the YAML parser, zod, liquid and the SDK are
// compiled lazily at every start. A cache taken with script.createCachedData()
// AFTER a run holds every function that run compiled (docs/performance.md, Init).
//
// The cache: <dir>/<key>.bin, <dir> = $SECRETS_AGENT_CODE_CACHE or code-cache/
// next to this file. <key> = the code's sha256 (fixed at build time), the node
// version and v8.cachedDataVersionTag() (V8's version, flags and CPU features:
// one file per flag set). The file starts with a header line naming the key,
// the payload's length and CRC32, all checked before V8 sees the payload; V8
// checks it again (script.cachedDataRejected). A missing, stale, truncated or
// corrupt cache, or one for other flags, is skipped silently: the code is
// compiled from source, as without a cache. Same output, same exit code.
//
// On a Node older than package.json's engines (no zlib.crc32), it exits 2 with
// one line naming the Node versions it needs, before anything else runs.
//
// Made only when asked: SECRETS_AGENT_CODE_CACHE_WRITE=1 writes the cache at
// exit if the process exits 0 (the image build's warm-up, scripts/code-cache-warmup.ts).
// Nothing is written otherwise (a read-only root filesystem is fine).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { debuglog } from 'node:util';
import { cachedDataVersionTag } from 'node:v8';
import { Script, constants as vmConstants } from 'node:vm';
import * as zlib from 'node:zlib';

/** package.json's engines.node, set by scripts/build.ts. */
declare const __SECRETS_AGENT_NODE_ENGINES__: string;

// The newest Node API the bundle needs is zlib.crc32 (Node.js v22.2.0 and
// v20.15.0; package.json engines). On an older Node, say which Node it needs
// (exit 2, a setup error) instead of failing with a SyntaxError about an export.
const crc32 = (zlib as { crc32?: typeof zlib.crc32 }).crc32!;
if (typeof crc32 !== 'function') {
  process.stderr.write(`secrets-agent needs Node.js ${__SECRETS_AGENT_NODE_ENGINES__} (package.json "engines"); this is Node.js ${process.version}: install a newer Node.js (docs/install.md)\n`);
  process.exit(2);
}

/** sha256 (hex) of the code after the marker, set by scripts/build.ts. */
declare const __SECRETS_AGENT_CODE_SHA256__: string;

/** Separates this loader from the code (scripts/build.ts's CODE_MARKER), at this offset (10 digits; the loader's own length). */
declare const __SECRETS_AGENT_CODE_MARKER__: string;
declare const __SECRETS_AGENT_CODE_OFFSET__: string;
const HEADER = 'secrets-agent code cache v1';

const self = import.meta.filename;
const file = readFileSync(self, 'utf8');
const at = Number(__SECRETS_AGENT_CODE_OFFSET__);
if (!file.startsWith(__SECRETS_AGENT_CODE_MARKER__, at)) throw new Error(`no agent code found loading ${self}: the marker line is missing; rebuild it with npm run build`);
// Every line of the code was prefixed with `//` (scripts/build.ts, encodeCode): undo that.
const code = file.slice(at + __SECRETS_AGENT_CODE_MARKER__.length + 2).replaceAll('\n//', '\n');

const dir = process.env.SECRETS_AGENT_CODE_CACHE || join(dirname(self), 'code-cache');
const key = `${__SECRETS_AGENT_CODE_SHA256__.slice(0, 16)}-node${process.version.slice(1)}-${cachedDataVersionTag().toString(16)}`;
const cacheFile = join(dir, `${key}.bin`);

/** NODE_DEBUG=secrets_agent_code_cache: what became of the cache, on stderr (tests; silent otherwise). */
const debug = debuglog('secrets_agent_code_cache');

/** The cache's payload when its header matches this code, node and flags; undefined otherwise (never throws). */
function readCache(): Buffer | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(cacheFile);
  } catch {
    debug('%s: none', cacheFile);
    return undefined;
  }
  const nl = buf.indexOf(10);
  const [magic, k, len, crc] = nl > 0 && nl < 300 ? buf.toString('latin1', 0, nl).split(' | ') : [];
  const payload = buf.subarray(nl + 1);
  if (magic !== HEADER || k !== key || Number(len) !== payload.length || crc !== crc32(payload).toString(16)) {
    debug('%s: skipped (header does not match this code, node and flags, or the payload its length and CRC32)', cacheFile);
    return undefined;
  }
  return payload;
}

const cachedData = readCache();
const script = new Script(code, {
  filename: self,
  ...(cachedData ? { cachedData } : {}),
  importModuleDynamically: vmConstants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
});
if (cachedData) debug('%s: %s', cacheFile, script.cachedDataRejected ? 'rejected by V8' : 'accepted');

if (process.env.SECRETS_AGENT_CODE_CACHE_WRITE === '1') {
  process.on('exit', (status) => {
    if (status !== 0) return;
    const payload = script.createCachedData();
    mkdirSync(dir, { recursive: true });
    const tmp = `${cacheFile}.tmp-${process.pid}`;
    writeFileSync(tmp, Buffer.concat([Buffer.from(`${[HEADER, key, payload.length, crc32(payload).toString(16)].join(' | ')}\n`, 'latin1'), payload]));
    renameSync(tmp, cacheFile);
  });
}

// The code is `(async function (require, importMetaUrl) { ...agent/main.ts bundled... })` (scripts/build.ts).
const run = script.runInThisContext() as (require: NodeJS.Require, importMetaUrl: string) => Promise<void>;
await run(createRequire(self), pathToFileURL(self).href);
