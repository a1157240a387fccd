// The set-up most e2e suites share: moto (optionally behind a recording/fault
// proxy) and a temp dir holding a projected-token stand-in; and its teardown in
// the one safe order: the processes a test started, and everything they started,
// are gone (procs.ts) before the proxies and moto stop and the dir is removed.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMoto, type Moto } from './moto.ts';
import { stopAll, type Stoppable } from './procs.ts';
import { startProxy, type Proxy } from './proxy.ts';

export interface Workspace {
  readonly moto: Moto;
  /** A proxy in front of moto, when asked for. */
  readonly proxy: Proxy;
  /** The temp dir; `root/token` is the web identity token file. */
  readonly root: string;
}

/** moto, a temp dir `<prefix>XXXXXX` with a token file, and a proxy in front of moto when `proxy` is set. */
export async function openWorkspace(prefix: string, options: { proxy?: boolean } = {}): Promise<Workspace> {
  const moto = await startMoto();
  const proxy = options.proxy ? await startProxy(moto.url) : (undefined as unknown as Proxy);
  const root = await mkdtemp(join(tmpdir(), prefix));
  await writeFile(join(root, 'token'), 'projected-token');
  return { moto, proxy, root };
}

/** A server a test started beside moto: a proxy, a fake STS, IMDS or Pod Identity endpoint. */
export interface Closeable {
  close(): Promise<void>;
}

/**
 * Stop `procs` (and wait for their trees), then the other servers (in order),
 * moto, and remove the dir. Tolerates a half-opened workspace (undefined servers).
 */
export async function closeWorkspace(w: Partial<Workspace> | undefined, procs: Iterable<Stoppable | undefined> = [], servers: Iterable<Closeable | undefined> = []): Promise<void> {
  await stopAll(procs);
  for (const s of servers) await s?.close();
  await w?.proxy?.close();
  await w?.moto?.stop();
  if (w?.root) await rm(w.root, { recursive: true, force: true });
}

/** One test case's dir `root/name` with its config.yaml, written from `yaml(out)`; `out` is `dir/out` (not created: the agent makes it). */
export async function writeCase(root: string, name: string, yaml: (out: string) => string): Promise<{ dir: string; out: string; config: string }> {
  const dir = join(root, name);
  const out = join(dir, 'out');
  await mkdir(dir, { recursive: true });
  const config = join(dir, 'config.yaml');
  await writeFile(config, yaml(out));
  return { dir, out, config };
}
