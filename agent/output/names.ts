// Names on the volume and the path arithmetic on payload paths.
//
// Every name whose first two characters are `..` is reserved for the agent (the
// payload may not use one, validate.ts): `..data`, `..data_tmp`, the generation
// dirs, `..manifest`, the temp names, and `..lock` (lock.ts). Only names of
// exactly these shapes are ever treated as the agent's own; payload paths are
// `/`-separated and relative to outputDir (already validated).
import { randomBytes } from 'node:crypto';

/** The symlink that names the live generation (generations layout). */
export const DATA = '..data';
/** The new `..data` link before its rename over `..data` (step 7 of generations.ts). */
export const DATA_TMP = '..data_tmp';
/** The list of what the files layout wrote (manifest.ts). */
export const MANIFEST = '..manifest';
/** `..2026_11_28_06_00_00.123456789`: UTC timestamp with nanoseconds. Only names of this exact shape are ever treated as ours. */
export const GENERATION_RE = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$/;
/** `..<name>.tmp-<12 hex>`: temp files (files layout) and temp links (link repair). */
export const TEMP_RE = /^\.\..*\.tmp-[0-9a-f]{12}$/;

/** `a/b/c` -> `a/b`; a top-level name -> `''` (outputDir itself). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** `certs/tls.crt` -> `certs`: the user-visible name a path hangs from. */
export function firstSegment(rel: string): string {
  const i = rel.indexOf('/');
  return i < 0 ? rel : rel.slice(0, i);
}

/** The first segments of `paths`: the names directly in outputDir. */
export function topLevelNames(paths: Iterable<string>): Set<string> {
  const names = new Set<string>();
  for (const p of paths) names.add(firstSegment(p));
  return names;
}

/** `a/b/c` -> `['a/b', 'a']`: the directories above a path, deepest first. */
export function ancestors(rel: string): string[] {
  const out: string[] = [];
  for (let d = parentOf(rel); d !== ''; d = parentOf(d)) out.push(d);
  return out;
}

// Wall clock in ns: Date.now() gives ms, hrtime the rest; strictly increasing per process.
const wallClockBaseNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
let lastGenerationNs = 0n;

/** A fresh generation name (GENERATION_RE), strictly later than the last one this process made. */
export function nextGenerationName(): string {
  let ns = wallClockBaseNs + process.hrtime.bigint();
  if (ns <= lastGenerationNs) ns = lastGenerationNs + 1n;
  lastGenerationNs = ns;
  const d = new Date(Number(ns / 1_000_000n));
  const two = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}_${two(d.getUTCMonth() + 1)}_${two(d.getUTCDate())}_${two(d.getUTCHours())}_${two(d.getUTCMinutes())}_${two(d.getUTCSeconds())}`;
  return `..${stamp}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

/** A temp name beside `name` (TEMP_RE), unique by 48 random bits. */
export function tempName(name: string): string {
  // Keep within NAME_MAX: ".." + 200 + ".tmp-" + 12.
  return `..${name.slice(0, 200)}.tmp-${randomBytes(6).toString('hex')}`;
}
