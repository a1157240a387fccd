"""Run one command from a mounted image root as a Kubernetes container runs it.

No container runtime works here (`podman run` cannot; `buildah run` has no
read-only root), so this does the runtime's part by hand, run as root inside
`unshare --mount` (a mount namespace of its own; the network is the host's, so
the process reaches moto on loopback as a pod reaches AWS):

  1. mount points the pod spec asks for are made in the container's writable
     layer (as a runtime does), then the root is bound READ-ONLY
     (readOnlyRootFilesystem: true);
  2. tmpfs volumes (emptyDir medium: Memory), binds (read-only unless told:
     ConfigMap, service-account token; a volume the caller mounted), /proc, and a /dev with null, zero, random, urandom;
  3. optionally joins a cgroup v1 memory cgroup (resources, as the kubelet
     charges a container);
  4. chroot, then drop every capability from the bounding set, no_new_privs
     (allowPrivilegeEscalation: false; capabilities: drop: [ALL]), setgroups to
     the supplemental groups given (fsGroup), setgid/setuid (runAsUser), and
     exec the command with exactly the environment given. The exec'd process is
     this process: its pid is the one the caller spawned, signals go to it.

usage: python3 launch.py SPEC.json   (see test/image/image.ts, LaunchSpec)
"""
import ctypes
import json
import os
import subprocess
import sys

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38


def mount(*args):
    subprocess.run(['mount', *args], check=True)


def main():
    spec = json.load(open(sys.argv[1]))
    root = spec['root']
    inside = lambda p: os.path.join(root, p.lstrip('/'))
    targets = [t['target'] for t in spec.get('tmpfs', [])] + [b['target'] for b in spec.get('binds', [])]
    for t in targets + ['/proc', '/dev']:
        os.makedirs(inside(t), exist_ok=True)
    mount('--make-rprivate', '/')
    mount('--bind', root, root)
    mount('-o', 'remount,bind,ro', root)
    for t in spec.get('tmpfs', []):
        mount('-t', 'tmpfs', '-o', t.get('options', 'mode=1777'), 'tmpfs', inside(t['target']))
    for b in spec.get('binds', []):
        mount('--bind', b['source'], inside(b['target']))
        if b.get('readOnly', True):
            mount('-o', 'remount,bind,ro', inside(b['target']))
    mount('-t', 'proc', '-o', 'nosuid,nodev,noexec', 'proc', inside('/proc'))
    mount('-t', 'tmpfs', '-o', 'mode=755,nosuid,size=64k', 'tmpfs', inside('/dev'))
    for dev in ['null', 'zero', 'random', 'urandom']:
        open(inside('/dev/' + dev), 'w').close()
        mount('--bind', '/dev/' + dev, inside('/dev/' + dev))
    mount('-o', 'remount,ro,bind', inside('/dev'))
    if spec.get('cgroup'):
        with open(os.path.join(spec['cgroup'], 'cgroup.procs'), 'w') as f:
            f.write(str(os.getpid()))
    last_cap = int(open('/proc/sys/kernel/cap_last_cap').read())
    libc = ctypes.CDLL(None, use_errno=True)
    os.chroot(root)
    os.chdir(spec.get('cwd', '/'))
    for cap in range(last_cap + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'PR_CAPBSET_DROP %d' % cap)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'PR_SET_NO_NEW_PRIVS')
    os.setgroups(spec.get('groups', []))
    os.setgid(spec['gid'])
    os.setuid(spec['uid'])  # from root to non-root: permitted and effective capabilities are cleared
    argv = spec['argv']
    os.execve(argv[0], argv, spec.get('env', {}))


main()
