#!/usr/bin/env python3
"""Check every pod template in rendered manifests against the Kubernetes
Pod Security Standards "restricted" profile, offline.

usage: check_pss.py MANIFEST...
       check_pss.py --self-test

Pods are found in Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job and CronJob objects (other documents are
skipped). Each pod spec is held to the restricted profile as the
PodSecurity admission controller applies it (baseline controls included),
for containers, init containers and ephemeral containers alike:

  * no hostNetwork, hostPID, hostIPC; no hostPort; no hostPath volume;
    only configMap, csi, downwardAPI, emptyDir, ephemeral,
    persistentVolumeClaim, projected and secret volumes;
  * no privileged container, no hostProcess, procMount Default;
  * allowPrivilegeEscalation: false on every container;
  * runAsNonRoot: true (pod, or every container) and never false on a
    container; runAsUser never 0;
  * seccompProfile RuntimeDefault or Localhost (pod, or every container),
    never Unconfined; AppArmor likewise not unconfined;
  * capabilities drop ALL on every container, add nothing but
    NET_BIND_SERVICE;
  * SELinux: no user or role, type among the container types; only the
    safe sysctls.

Why here: a namespace labelled `pod-security.kubernetes.io/enforce:
restricted` refuses pods that break any of these, and the StatefulSet or
Job then just never gets its pods; checking the rendered objects in CI
finds that before a cluster does. Exit status 1 on any violation, or when
no pod was seen (so a broken render cannot pass silently).
"""
import copy
import sys

import yaml

ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}
APPARMOR_OK = {"RuntimeDefault", "Localhost"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def pod_specs(doc):
    """(kind/name, pod spec, pod metadata) of every pod template in doc."""
    kind = doc.get("kind", "")
    name = f"{kind}/{(doc.get('metadata') or {}).get('name', '?')}"
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return [(name, spec, doc.get("metadata") or {})]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                "ReplicationController", "Job"):
        template = spec.get("template") or {}
        return [(name, template.get("spec") or {}, template.get("metadata") or {})]
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return [(name, template.get("spec") or {}, template.get("metadata") or {})]
    return []


def containers(spec):
    for field in CONTAINER_LISTS:
        for c in spec.get(field) or []:
            yield f"{field}[{c.get('name', '?')}]", c


def check_host(spec):
    out = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"{field} is true")
    for v in spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        for k in kinds:
            if k not in ALLOWED_VOLUMES:
                out.append(f"volume {v.get('name')} is of type {k} (not allowed by restricted)")
    for where, c in containers(spec):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(f"{where} uses hostPort {p['hostPort']}")
    for s in (spec.get("securityContext") or {}).get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctl {s.get('name')} is not a safe sysctl")
    return out


def check_selinux_apparmor(where, sc, meta_annotations, container_name=None):
    out = []
    se = sc.get("seLinuxOptions") or {}
    if se.get("user") or se.get("role"):
        out.append(f"{where} sets seLinuxOptions user/role")
    if se.get("type", "") not in SELINUX_TYPES:
        out.append(f"{where} seLinuxOptions.type {se.get('type')} not allowed")
    aa = (sc.get("appArmorProfile") or {}).get("type")
    if aa is not None and aa not in APPARMOR_OK:
        out.append(f"{where} appArmorProfile {aa}")
    if container_name is not None:
        key = f"container.apparmor.security.beta.kubernetes.io/{container_name}"
        val = meta_annotations.get(key)
        if val is not None and val != "runtime/default" and not val.startswith("localhost/"):
            out.append(f"{where} AppArmor annotation {val}")
    return out


def check_container(where, c, pod_sc, annotations):
    """Violations of one container, given the pod-level securityContext."""
    out = []
    sc = c.get("securityContext") or {}
    if sc.get("privileged"):
        out.append(f"{where} is privileged")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append(f"{where} is a Windows hostProcess")
    if sc.get("procMount", "Default") != "Default":
        out.append(f"{where} procMount {sc['procMount']}")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{where} must set allowPrivilegeEscalation: false")
    non_root = sc.get("runAsNonRoot")
    if non_root is False or (non_root is None and pod_sc.get("runAsNonRoot") is not True):
        out.append(f"{where} must run with runAsNonRoot: true (pod or container)")
    if sc.get("runAsUser") == 0:
        out.append(f"{where} runAsUser 0")
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in SECCOMP_OK:
        out.append(f"{where} seccompProfile {seccomp}")
    elif seccomp is None and pod_seccomp not in SECCOMP_OK:
        out.append(f"{where} needs seccompProfile RuntimeDefault or Localhost (pod or container)")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append(f"{where} must drop capability ALL")
    for cap in caps.get("add") or []:
        if cap != "NET_BIND_SERVICE":
            out.append(f"{where} adds capability {cap}")
    out += check_selinux_apparmor(where, sc, annotations, c.get("name", "?"))
    return out


def violations(spec, meta):
    """Every restricted-profile violation of one pod spec."""
    pod_sc = spec.get("securityContext") or {}
    annotations = meta.get("annotations") or {}
    out = check_host(spec)
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod is a Windows hostProcess")
    if pod_sc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        out.append(f"pod seccompProfile {pod_seccomp}")
    out += check_selinux_apparmor("pod", pod_sc, annotations)
    if not spec.get("containers"):
        out.append("pod has no containers")
    for where, c in containers(spec):
        out += check_container(where, c, pod_sc, annotations)
    return out


def check_files(paths):
    failures, pods = 0, 0
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
        for doc in docs:
            for name, spec, meta in pod_specs(doc):
                pods += 1
                bad = violations(spec, meta)
                for v in bad:
                    print(f"FAIL {path}: {name}: {v}")
                failures += len(bad)
                if not bad:
                    print(f"ok   {path}: {name} meets restricted")
    if pods == 0:
        print("FAIL no pod template found")
        return 1
    print(f"{pods} pod template(s) checked against Pod Security restricted, {failures} violation(s)")
    return 1 if failures else 0


GOOD = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
        "name": "c",
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
    }],
    "volumes": [{"name": "d", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x"}}],
}


def self_test():
    """The checker must pass a compliant pod and catch each violation."""
    assert violations(GOOD, {}) == [], violations(GOOD, {})
    cases = [
        ("hostNetwork", lambda p: p.update(hostNetwork=True)),
        ("hostPID", lambda p: p.update(hostPID=True)),
        ("hostIPC", lambda p: p.update(hostIPC=True)),
        ("type hostPath", lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}})),
        ("type nfs", lambda p: p["volumes"].append({"name": "n", "nfs": {}})),
        ("hostPort", lambda p: p["containers"][0].update(ports=[{"containerPort": 1, "hostPort": 1}])),
        ("privileged", lambda p: p["containers"][0]["securityContext"].update(privileged=True)),
        ("allowPrivilegeEscalation", lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation")),
        ("runAsNonRoot", lambda p: p["securityContext"].pop("runAsNonRoot")),
        ("runAsNonRoot", lambda p: p["containers"][0]["securityContext"].update(runAsNonRoot=False)),
        ("runAsUser 0", lambda p: p["containers"][0]["securityContext"].update(runAsUser=0)),
        ("seccompProfile", lambda p: p["securityContext"].pop("seccompProfile")),
        ("seccompProfile Unconfined", lambda p: p["containers"][0]["securityContext"].update(
            seccompProfile={"type": "Unconfined"})),
        ("drop capability ALL", lambda p: p["containers"][0]["securityContext"]["capabilities"].pop("drop")),
        ("adds capability SYS_ADMIN", lambda p: p["containers"][0]["securityContext"]["capabilities"].update(
            add=["SYS_ADMIN"])),
        ("procMount", lambda p: p["containers"][0]["securityContext"].update(procMount="Unmasked")),
        ("sysctl", lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}])),
        ("seLinuxOptions", lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"})),
        ("initContainers[i] must set allowPrivilegeEscalation", lambda p: p.update(
            initContainers=[{"name": "i", "securityContext": {"capabilities": {"drop": ["ALL"]}}}])),
    ]
    for expected, mutate in cases:
        pod = copy.deepcopy(GOOD)
        mutate(pod)
        found = violations(pod, {})
        assert any(expected in v for v in found), f"{expected!r} not caught: {found}"
    # Container-level settings can stand in for the pod's.
    pod = copy.deepcopy(GOOD)
    pod["securityContext"] = {}
    pod["containers"][0]["securityContext"].update(
        runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p.json"})
    assert violations(pod, {}) == [], violations(pod, {})
    assert pod_specs({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {
        "spec": {"template": {"spec": GOOD}}}}})[0][1] is GOOD
    assert pod_specs({"kind": "Service", "spec": {}}) == []
    print(f"ok   self-test: a compliant pod passes, {len(cases)} violations are caught")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    return check_files(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
