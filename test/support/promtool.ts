// promtool (Debian package "prometheus"; .ci/run installs it). Present, or a skip
// reason; in CI a missing promtool fails instead of skipping.
import { spawnSync } from 'node:child_process';

export function promtool(): { ok: true } | { ok: false; reason: string } {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (r.error === undefined && r.status === 0) return { ok: true };
  const reason = 'promtool not found (apt-get install -y prometheus)';
  if (process.env.CI) throw new Error(`${reason}; CI must have it`);
  return { ok: false, reason };
}

export function runPromtool(args: string[], options: { cwd?: string; input?: string } = {}): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', ...options });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
