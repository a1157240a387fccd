// The set-up most e2e suites share: moto (optionally behind a recording/fault
// proxy) and a temp dir holding a projected-token stand-in; and its teardown in
// the one safe order: the processes a test started, and everything they started,
// are gone (procs.ts) before the proxies and moto stop and the dir is removed.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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

/** Stop `procs` (and wait for their trees), then the proxies, moto, and remove the dir. Tolerates a half-opened workspace. */
export async function closeWorkspace(w: Partial<Workspace> | undefined, procs: Iterable<Stoppable | undefined> = [], proxies: Iterable<Proxy> = []): Promise<void> {
  await stopAll(procs);
  for (const p of proxies) await p.close();
  await w?.proxy?.close();
  await w?.moto?.stop();
  if (w?.root) await rm(w.root, { recursive: true, force: true });
}
