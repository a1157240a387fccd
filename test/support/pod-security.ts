// A checker for the Pod Security Standards' "baseline" and "restricted"
// profiles, written from the checks Pod Security admission runs
// (kubernetes/kubernetes, staging/src/k8s.io/pod-security-admission/policy/
// check_*.go, commit 422c8fc5a00f44b433ece57d74824df049d860d8; the rules are
// also the table of https://kubernetes.io/docs/concepts/security/pod-security-standards/).
// It stands in for an API server with the namespace label
// pod-security.kubernetes.io/enforce: restricted, which tests cannot run.
// Returns one line per violated check, in PSA's words; [] = allowed.

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const RESTRICTED_VOLUMES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);
const BASELINE_CAPABILITIES = new Set(['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']);
const SAFE_SYSCTLS = new Set(['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes']);

/** Every container of the pod spec: containers, initContainers, ephemeralContainers (PSA's visitContainers). */
function containersOf(spec: Obj): Obj[] {
  return [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...(spec.ephemeralContainers ?? [])];
}

export function restrictedViolations(spec: Obj, metadata: Obj = {}): string[] {
  return [...baselineViolations(spec, metadata), ...restrictedOnly(spec)];
}

/** The "baseline" checks (check_hostNamespaces, _privileged, _capabilities_baseline, _hostPathVolumes, _hostPorts, _appArmorProfile, _seLinuxOptions, _procMount, _seccompProfile_baseline, _sysctls, _windowsHostProcess). */
export function baselineViolations(spec: Obj, metadata: Obj = {}): string[] {
  const out: string[] = [];
  const pod = spec.securityContext ?? {};
  const cs = containersOf(spec);
  for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) if (spec[k] === true) out.push(`host namespaces (${k}=true)`);
  for (const c of cs) {
    const sc = c.securityContext ?? {};
    if (sc.privileged === true) out.push(`privileged (container "${c.name}" must not set securityContext.privileged=true)`);
    for (const cap of sc.capabilities?.add ?? []) if (!BASELINE_CAPABILITIES.has(cap)) out.push(`non-default capabilities (container "${c.name}" must not include "${cap}" in securityContext.capabilities.add)`);
    for (const p of c.ports ?? []) if (p.hostPort) out.push(`hostPort (container "${c.name}" uses hostPort ${p.hostPort})`);
    if (sc.procMount !== undefined && sc.procMount !== 'Default') out.push(`procMount (container "${c.name}" must not set securityContext.procMount)`);
    if (sc.seccompProfile?.type === 'Unconfined') out.push(`seccompProfile (container "${c.name}" must not set securityContext.seccompProfile.type to "Unconfined")`);
    if (sc.appArmorProfile?.type === 'Unconfined') out.push(`appArmorProfile (container "${c.name}" must not set appArmorProfile.type to "Unconfined")`);
    if (sc.windowsOptions?.hostProcess === true) out.push(`hostProcess (container "${c.name}")`);
    const se = sc.seLinuxOptions;
    if (se && (se.user || se.role || (se.type && !['container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'].includes(se.type)))) out.push(`seLinuxOptions (container "${c.name}")`);
  }
  for (const v of spec.volumes ?? []) if (v.hostPath) out.push(`hostPath volumes (volume "${v.name}")`);
  if (pod.seccompProfile?.type === 'Unconfined') out.push('seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")');
  if (pod.appArmorProfile?.type === 'Unconfined') out.push('appArmorProfile (pod must not set appArmorProfile.type to "Unconfined")');
  for (const s of pod.sysctls ?? []) if (!SAFE_SYSCTLS.has(s.name)) out.push(`forbidden sysctls (${s.name})`);
  for (const [k, v] of Object.entries(metadata.annotations ?? {})) {
    if (k.startsWith('container.apparmor.security.beta.kubernetes.io/') && v !== 'runtime/default' && !String(v).startsWith('localhost/')) out.push(`forbidden AppArmor profile (annotation ${k}=${String(v)})`);
  }
  return out;
}

/** The checks "restricted" adds (check_restrictedVolumes, _allowPrivilegeEscalation, _runAsNonRoot, _runAsUser, _seccompProfile_restricted, _capabilities_restricted). */
function restrictedOnly(spec: Obj): string[] {
  const out: string[] = [];
  const pod = spec.securityContext ?? {};
  const cs = containersOf(spec);
  for (const v of spec.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (type !== undefined && !RESTRICTED_VOLUMES.has(type)) out.push(`restricted volume types (volume "${v.name}" uses ${type})`);
  }
  for (const c of cs) {
    const sc = c.securityContext ?? {};
    // check_allowPrivilegeEscalation: must be set, to false.
    if (sc.allowPrivilegeEscalation !== false) out.push(`allowPrivilegeEscalation != false (container "${c.name}" must set securityContext.allowPrivilegeEscalation=false)`);
    // check_capabilities_restricted: drop ALL; add at most NET_BIND_SERVICE.
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`unrestricted capabilities (container "${c.name}" must set securityContext.capabilities.drop=["ALL"])`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`unrestricted capabilities (container "${c.name}" must not include "${cap}" in securityContext.capabilities.add)`);
    // check_runAsNonRoot: true on the pod or on every container; never false on a container.
    if (sc.runAsNonRoot === false) out.push(`runAsNonRoot != true (container "${c.name}" must not set securityContext.runAsNonRoot=false)`);
    else if (sc.runAsNonRoot !== true && pod.runAsNonRoot !== true) out.push(`runAsNonRoot != true (pod or container "${c.name}" must set securityContext.runAsNonRoot=true)`);
    // check_runAsUser: never 0.
    if (sc.runAsUser === 0) out.push(`runAsUser=0 (container "${c.name}" must not set runAsUser=0)`);
    // check_seccompProfile_restricted: RuntimeDefault or Localhost, on the pod or on every container.
    const type = sc.seccompProfile?.type;
    if (type !== undefined && type !== 'RuntimeDefault' && type !== 'Localhost') out.push(`seccompProfile (container "${c.name}" must not set securityContext.seccompProfile.type to "${type}")`);
    else if (type === undefined && pod.seccompProfile?.type !== 'RuntimeDefault' && pod.seccompProfile?.type !== 'Localhost') {
      out.push(`seccompProfile (pod or container "${c.name}" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`);
    }
  }
  if (pod.runAsNonRoot === false) out.push('runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)');
  if (pod.runAsUser === 0) out.push('runAsUser=0 (pod must not set runAsUser=0)');
  return out;
}
