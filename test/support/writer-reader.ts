// A consumer in a tight loop, run as a separate process so it reads truly
// concurrently with the writer: it resolves ..data once per read, reads a.txt
// and b.txt from that one generation and checks they come from the same render.
//
// Usage: node writer-reader.ts <outputDir> <stopFile>
// Prints "ready" once, then, when <stopFile> exists, one JSON line:
// { pairs, mismatches, vanished, generations, firstMismatch? }.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

const [outputDir, stopFile] = process.argv.slice(2);
if (!outputDir || !stopFile) throw new Error('usage: writer-reader.ts <outputDir> <stopFile>');

let pairs = 0;
let mismatches = 0;
let vanished = 0;
let firstMismatch: string | undefined;
const generations = new Set<string>();

process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  // Checking the stop file on every read would slow the loop for nothing.
  if (i % 64 === 0 && existsSync(stopFile)) break;
  let gen: string;
  let a: string;
  let b: string;
  try {
    gen = readlinkSync(path.join(outputDir, '..data'));
    a = readFileSync(path.join(outputDir, gen, 'a.txt'), 'utf8');
    b = readFileSync(path.join(outputDir, gen, 'b.txt'), 'utf8');
  } catch (e) {
    // The generation we resolved was removed after the next switch: read again.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      vanished++;
      continue;
    }
    throw e;
  }
  pairs++;
  generations.add(gen);
  if (a !== b.replace('key', 'crt') || !/^crt \d+ x+\n$/.test(a)) {
    mismatches++;
    firstMismatch ??= `${gen}: ${a.slice(0, 20)} / ${b.slice(0, 20)}`;
  }
}
process.stdout.write(JSON.stringify({ pairs, mismatches, vanished, generations: generations.size, firstMismatch }) + '\n');
