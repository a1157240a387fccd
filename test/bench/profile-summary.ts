// Where a profiled agent spent its CPU or its allocations, by package and by
// the agent's own functions: each sample is charged to the nearest frame in
// the bundle, mapped to its source through the bundle's source map.
//
//   BENCH_PROFILE=cpu:/tmp/prof npm run bench -- --only=scale
//   node test/bench/profile-summary.ts /tmp/prof/CPU.<...>.cpuprofile [--from=ms] [--to=ms]
//   BENCH_PROFILE=alloc:/tmp/alloc npm run bench -- --only=scale
//   node test/bench/profile-summary.ts /tmp/alloc/<pid>.heapprofile
//
// A .cpuprofile without --from/--to first prints its busy time in 250 ms
// buckets, to pick a window (a check round); --map=path for another bundle
// (default dist/secrets-agent.mjs.map). docs/performance.md (Scale) has what it showed.
import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { join } from 'node:path';
import { REPO } from './lib.ts';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface Node {
  id: number;
  callFrame: CallFrame;
  children?: (number | Node)[];
  selfSize?: number;
}

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const opt = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
if (!file) {
  process.stderr.write('usage: node test/bench/profile-summary.ts <file.cpuprofile|file.heapprofile> [--from=ms --to=ms] [--map=path]\n');
  process.exit(2);
}
const map = new SourceMap(JSON.parse(readFileSync(opt('map') ?? join(REPO, 'dist/secrets-agent.mjs.map'), 'utf8')) as never);

/** "agent/refresh/scheduler.ts:316 #runCheck" for a bundle frame, undefined for node's own. */
function source(cf: CallFrame): string | undefined {
  if (!cf.url.endsWith('secrets-agent.mjs')) return undefined;
  const e = map.findEntry(cf.lineNumber, cf.columnNumber) as { originalSource?: string; originalLine?: number; name?: string };
  if (!e.originalSource) return undefined;
  const f = e.originalSource.replace(/.*node_modules\//, '').replace(/.*\/agent\//, 'agent/');
  return `${f}:${(e.originalLine ?? 0) + 1} ${e.name ?? cf.functionName}`;
}
const packageOf = (src: string): string => {
  const parts = src.split(/[/:]/);
  return src.startsWith('agent/') || (parts[0] as string).startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string);
};

const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const charge = (stack: readonly string[], leaf: CallFrame, amount: number): void => {
  const near = stack.at(-1);
  const key = near ? packageOf(near) : leaf.url || leaf.functionName;
  self.set(key, (self.get(key) ?? 0) + amount);
  for (const f of new Set(stack.filter((x) => x.startsWith('agent/')))) inclusive.set(f, (inclusive.get(f) ?? 0) + amount);
};

let unit: string;
let total = 0;
const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes?: Node[]; samples?: number[]; timeDeltas?: number[]; head?: Node };
if (profile.head) {
  // .heapprofile: a tree of nodes with selfSize (bytes)
  unit = 'MB allocated';
  const walk = (n: Node, stack: string[]): void => {
    const src = source(n.callFrame);
    const here = src ? [...stack, src] : stack;
    if (n.selfSize) {
      total += n.selfSize;
      charge(here, n.callFrame, n.selfSize);
    }
    for (const c of n.children ?? []) walk(c as Node, here);
  };
  walk(profile.head, []);
} else {
  // .cpuprofile: samples (node ids) with time deltas (µs)
  unit = 'ms CPU';
  const nodes = new Map((profile.nodes ?? []).map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of nodes.values()) for (const c of n.children ?? []) parent.set(c as number, n.id);
  const from = Number(opt('from') ?? NaN);
  const to = Number(opt('to') ?? NaN);
  const buckets = new Map<number, number>();
  let t = 0;
  (profile.samples ?? []).forEach((id, i) => {
    const dt = profile.timeDeltas?.[i] ?? 0;
    t += dt;
    const leaf = (nodes.get(id) as Node).callFrame;
    if (leaf.functionName === '(idle)') return;
    buckets.set(Math.floor(t / 250_000), (buckets.get(Math.floor(t / 250_000)) ?? 0) + dt);
    if (!(t / 1000 >= from && t / 1000 <= to)) return;
    const stack: string[] = [];
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const src = source((nodes.get(n) as Node).callFrame);
      if (src) stack.unshift(src);
    }
    total += dt;
    charge(stack, leaf, dt);
  });
  if (Number.isNaN(from) || Number.isNaN(to)) {
    process.stdout.write('busy ms per 250 ms from the profile start (pick --from and --to):\n');
    for (const [b, us] of [...buckets].sort((x, y) => x[0] - y[0])) process.stdout.write(`${String(b * 250).padStart(8)} ms  ${(us / 1000).toFixed(1)}\n`);
    process.exit(0);
  }
}

const scale = unit === 'ms CPU' ? 1000 : 1048576;
const show = (m: Map<string, number>, n: number): string =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${(v / scale).toFixed(2).padStart(10)}  ${k}`).join('\n');
process.stdout.write(`total: ${(total / scale).toFixed(2)} ${unit}\n-- by package (nearest bundle frame)\n${show(self, 15)}\n-- the agent's functions, inclusive\n${show(inclusive, 20)}\n`);
