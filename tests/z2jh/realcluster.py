"""The real Kubernetes control plane as the chart's hub pod sees it, for ``hubpod.py --real``.

Runs inside the test's private mount and network namespace (``unshare --mount --net``), so
the control plane, the node agent, the chart's user scheduler, the hub and the proxy share
one loopback of their own: the chart's fixed ports (hub 8081, proxy 8000/8001, the user
scheduler's 10259) cannot clash with anything else on the machine, and the hub reaches the
API server and every user pod's address exactly as a pod reaches them in a cluster.

What it sets up, as an operator's cluster would have it:

* kube-apiserver (Node,RBAC), kube-scheduler, kube-controller-manager and etcd
  (``mig_spawner.demo.controlplane.ControlPlane``: the one place this harness names the
  control-plane launcher);
* the release namespace; the objects the test passes (the chart's hub ServiceAccount, Role
  and RoleBinding, its user-scheduler ServiceAccount, ClusterRole and ClusterRoleBinding, and
  our ClusterRole/Binding as the guide's commands write them), applied as the admin;
* static PersistentVolumes for the chart's per-user claims (no StorageClass: the real PV
  controller binds each claim to one of them);
* the node agent (``python -m mig_spawner.demo.controlplane.agent``) registering the cluster
  file's GPU nodes and running the pods bound to them;
* the chart's user scheduler (a second kube-scheduler, ``jhub-user-scheduler``, which the
  user pods name) with the rendered ConfigMap's configuration, run as a pod of its
  ServiceAccount.

A "pod" (:meth:`RealCluster.pod_command`) is a process in a mount namespace of its own,
where ``/run`` is a fresh tmpfs holding only the ServiceAccount volume, as the kubelet
mounts it: ``/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`` (a
TokenRequest token for that ServiceAccount; ca.crt from the namespace's
``kube-root-ca.crt`` ConfigMap, which the controller manager publishes: the CA of the
apiserver's TLS certificate). Its environment has ``KUBERNETES_SERVICE_HOST/PORT``, which
point at the API server itself (in a cluster they name the ``kubernetes`` Service's
ClusterIP; the launcher runs no service proxy).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mig_spawner.demo.controlplane import ControlPlane

SA_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is /run
#: The pod's mounts, then the container's command ("$0" is the ServiceAccount volume).
POD_MOUNTS = (
    "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; "
    f'mkdir -p {SA_DIR}; mount --bind -o ro "$0" {SA_DIR}; '
    'exec "$@"'
)
PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "PersistentVolume": "persistentvolumes",
}


def api_path(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{ns}/{PLURALS[obj['kind']]}/{meta['name']}"


class RealCluster:
    """``setup``: namespace, objects, cluster_file, volumes, user_scheduler (command,
    config), from the test (``test_chart_real_cluster.py``)."""

    def __init__(self, root: Path, setup: dict[str, Any]):
        self.root, self.setup = root, setup
        self.namespace = setup["namespace"]
        self.plane: ControlPlane | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    # -- the API, as the admin ------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, content_type=None):
        assert self.plane is not None
        args = (method, path, body) + ((content_type,) if content_type else ())
        return self.plane.request(*args)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        path = api_path(obj) + "?fieldManager=chart-test&force=true"
        status, body = self.request("PATCH", path, obj, "application/apply-patch+yaml")
        if status not in (200, 201):
            raise RuntimeError(f"apply {obj['kind']} {obj['metadata']['name']}: {status} {body}")
        return body

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        return body if status == 200 else None

    def wait(self, what: str, probe, timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) waiting for {what}")
            result = probe()
            if result:
                return result
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}")

    def pods(self) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]

    def events(self) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/namespaces/{self.namespace}/events")["items"]

    def claims(self) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims")["items"]

    def evidence(self, user: str) -> dict[str, Any]:
        """The user's claim and the events about the user's pod (who scheduled it)."""
        pods = {
            p["metadata"]["name"]
            for p in self.pods()
            if p["metadata"].get("labels", {}).get("hub.jupyter.org/username") == user
        }
        return {
            "events": [e for e in self.events() if e["involvedObject"].get("name") in pods],
            "claims": [
                c
                for c in self.claims()
                if c["metadata"].get("labels", {}).get("hub.jupyter.org/username") == user
            ],
        }

    def drop_verb(self, change: dict[str, str]) -> None:
        """Take ``verb`` on ``resource`` out of ClusterRole ``name`` (an operator's mistake)."""
        role = self.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{change['name']}")
        for rule in role["rules"]:
            if change["resource"] in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != change["verb"]]
        status, body = self.request(
            "PUT", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{change['name']}", role
        )
        if status != 200:
            raise RuntimeError(f"update ClusterRole {change['name']}: {status} {body}")

    # -- pods ---------------------------------------------------------------------------------

    def pod_env(self) -> dict[str, str]:
        assert self.plane is not None
        port = str(self.plane.port)
        return {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
        }

    def service_account_volume(self, name: str) -> Path:
        """token, ca.crt and namespace, as the kubelet projects them for ServiceAccount ``name``."""
        assert self.plane is not None
        volume = self.root / "serviceaccounts" / name
        volume.mkdir(parents=True)
        token = self.plane.service_account_token(self.namespace, name, 3600)
        roots = self.wait(
            "the kube-root-ca.crt ConfigMap",
            lambda: self.get(f"/api/v1/namespaces/{self.namespace}/configmaps/kube-root-ca.crt"),
        )
        (volume / "token").write_text(token)
        (volume / "ca.crt").write_text(roots["data"]["ca.crt"])
        (volume / "namespace").write_text(self.namespace)
        return volume

    def pod_command(self, service_account: str, command: list[str]) -> list[str]:
        volume = self.root / "serviceaccounts" / service_account
        if not volume.exists():
            volume = self.service_account_volume(service_account)
        return ["unshare", "--mount", "--", "sh", "-c", POD_MOUNTS, str(volume), *command]

    def hub_env(self) -> dict[str, str]:
        return self.pod_env()

    def hub_command(self, command: list[str]) -> list[str]:
        return self.pod_command(self.setup["hub_service_account"], command)

    # -- life cycle ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.root / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _nodes_ready(self) -> bool:
        nodes = {n["metadata"]["name"]: n for n in self.get("/api/v1/nodes")["items"]}
        for name in self.setup["node_names"]:
            taints = {t["key"] for t in (nodes.get(name, {}).get("spec") or {}).get("taints") or []}
            if name not in nodes or "node.kubernetes.io/not-ready" in taints:
                return False
        return True

    def start(self) -> RealCluster:
        self.plane = ControlPlane(workdir=self.root / "k8s").start()
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        for obj in self.setup["objects"]:
            self.apply(obj)
        for i in range(self.setup["volumes"]):
            path = self.root / "volumes" / f"pv-{i}"
            path.mkdir(parents=True)
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"chart-test-{i}"},
                    "spec": {
                        "capacity": {"storage": self.setup["volume_size"]},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(path)},
                    },
                }
            )
        self.wait(
            f"ServiceAccount {self.namespace}/default (pods need it)",
            lambda: self.get(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default"),
        )
        agent = [sys.executable, "-m", "mig_spawner.demo.controlplane.agent"]
        agent += [self.setup["cluster_file"], "--kubeconfig", str(self.plane.kubeconfig)]
        self._spawn("node-agent", [*agent, "--kubelet", "stub", "--verbose"])
        self.wait("the agent's GPU nodes Ready", self._nodes_ready)
        scheduler = self.setup["user_scheduler"]
        config = self.root / "user-scheduler" / "config.yaml"
        config.parent.mkdir()
        config.write_text(scheduler["config"])
        # the Deployment's command, with its image's binary and the ConfigMap's mount path
        # mapped to this machine's (the binary here is the control plane's kube-scheduler)
        command = [str(self.plane.bin_dir / "kube-scheduler")]
        for arg in scheduler["command"][1:]:
            command.append(arg.replace(scheduler["config_dir"], str(config.parent)))
        self._spawn(
            "user-scheduler",
            self.pod_command(scheduler["service_account"], command),
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **self.pod_env()},
        )
        return self

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.plane is not None:
            with contextlib.suppress(Exception):
                self.plane.stop()

    async def __aenter__(self) -> RealCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
