// Payload validation: step 1 of both layouts' write(), before the volume is
// opened (so a rejected payload touches nothing, not even the lock).
//
// A payload path is relative to outputDir, `/`-separated, with no empty, `.` or
// `..` segment and no segment starting with `..` (reserved for the agent,
// names.ts), within NAME_MAX/PATH_MAX; no two files share a path and no path is
// both a file and a directory. Modes are 0 to 0o7777, uid/gid valid ids, content
// a Buffer. A violation is a WriteError UNSAFE_PATH or INVALID_FILE naming the rule.
import { WriteError } from '../errors.ts';
import type { RenderedFile } from '../types.ts';
import { UNCHANGED } from './errors.ts';
import { parentOf } from './names.ts';

const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4096;

/** (1) Returns the payload keyed by path, in sorted order, or throws WriteError UNSAFE_PATH / INVALID_FILE naming the rule. */
export function validateFiles(files: readonly RenderedFile[], outputDir: string): Map<string, RenderedFile> {
  const reject = (p: string, rule: string, code = 'UNSAFE_PATH'): WriteError =>
    new WriteError(`file path ${JSON.stringify(p)} for ${outputDir} is not allowed: ${rule}; nothing was written, ${UNCHANGED}`, code);
  const byPath = new Map<string, RenderedFile>();
  for (const file of files) {
    const p = file.path;
    if (typeof p !== 'string' || p === '') throw reject(String(p), 'it must not be empty');
    if (p.startsWith('/')) throw reject(p, 'it must be relative to outputDir');
    if (p.includes('\0')) throw reject(p, 'it must not contain a NUL byte');
    if (Buffer.byteLength(p) > MAX_PATH_BYTES) throw reject(p, `it must be at most ${MAX_PATH_BYTES} bytes`);
    for (const segment of p.split('/')) {
      if (segment === '') throw reject(p, 'it must not contain an empty segment ("//" or a trailing "/")');
      if (segment === '.') throw reject(p, 'it must not contain a "." segment');
      if (segment === '..') throw reject(p, 'it must not contain a ".." segment');
      if (segment.startsWith('..')) throw reject(p, 'names beginning with ".." are reserved for the agent');
      if (Buffer.byteLength(segment) > MAX_NAME_BYTES) throw reject(p, `each name must be at most ${MAX_NAME_BYTES} bytes`);
    }
    if (byPath.has(p)) throw reject(p, 'two files have this path');
    if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o7777) throw reject(p, `mode ${String(file.mode)} is not a file mode (0 to 0o7777)`, 'INVALID_FILE');
    for (const [key, id] of [['uid', file.uid], ['gid', file.gid]] as const) {
      if (id !== undefined && (!Number.isInteger(id) || id < 0 || id > 0xfffffffe)) throw reject(p, `${key} ${String(id)} is not a valid id`, 'INVALID_FILE');
    }
    if (!Buffer.isBuffer(file.content)) throw reject(p, 'content must be a Buffer', 'INVALID_FILE');
    byPath.set(p, file);
  }
  for (const p of byPath.keys()) {
    for (let dir = parentOf(p); dir !== ''; dir = parentOf(dir)) {
      if (byPath.has(dir)) throw reject(dir, `it is a file, and "${p}" needs it to be a directory`);
    }
  }
  return new Map([...byPath].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
