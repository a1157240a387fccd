// A stand-in for the kubelet and the container runtime, for the restart notify's
// tests (test/e2e/restart.test.ts). A real kubelet cannot run here; this does the
// two things the restart notify relies on, for real, with real processes:
// - each "container" starts inside the pod's PID namespace the way the runtime
//   starts one: from outside the namespace (nsenter -t <pause> -p -m), so its main
//   process has parent pid 0 inside it, as under containerd or CRI-O;
// - restartPolicy Always: when a container's main process exits, it is started
//   again (at once: the kubelet's first restart after a long run waits no back-off,
//   docs/notify.md).
//
//   node stand-in-kubelet.ts <pause host pid> <name>=<program> ...
//
// Prints one JSON line per event on stdout: {"container","event":"start"|"exit",
// "code","signal","at"} (`at`: Date.now()). SIGTERM: stop restarting and exit,
// leaving the containers to the caller (which ends the pod by killing its pause).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const [pause, ...containers] = process.argv.slice(2);
if (pause === undefined || containers.length === 0) {
  process.stderr.write('usage: stand-in-kubelet.ts <pause host pid> <name>=<program> ...\n');
  process.exit(2);
}

let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  process.exit(0);
});

const emit = (record: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...record, at: Date.now() })}\n`);
};

function start(name: string, program: string): void {
  const child = spawn('nsenter', ['-t', pause!, '-p', '-m', '--', program], { stdio: ['ignore', 'inherit', 'inherit'] });
  emit({ container: name, event: 'start' });
  child.on('exit', (code, signal) => {
    emit({ container: name, event: 'exit', code, signal });
    // The pod is gone (its pause process ended): nothing to restart into.
    if (!stopping && existsSync(`/proc/${pause}`)) start(name, program);
  });
}

for (const c of containers) {
  const eq = c.indexOf('=');
  start(c.slice(0, eq), c.slice(eq + 1));
}
