"""Fixtures for tests against the real Kubernetes control plane (tests/conftest.py imports them).

* ``control_plane`` (session): etcd, kube-apiserver (Node,RBAC), kube-scheduler and
  kube-controller-manager from ``make k8s`` (:class:`mig_spawner.demo.controlplane.ControlPlane`),
  with the hub's RBAC applied: the Zero to JupyterHub 4.4.0 hub Role and RoleBinding and the
  hub ServiceAccount, rendered by the real helm from ``../shared/z2jh/chart/jupyterhub``, plus
  our ClusterRole and ClusterRoleBinding, and the waiting line's Role and RoleBinding, from
  ``helm-values/rbac/`` (namespace ``jhub``).
  Skipped when the binaries are not built, unless ``MIG_SPAWNER_REQUIRE_REAL_K8S=1`` (``make
  test`` sets it), which turns that into a failure.
* ``real_cluster`` (function): ``real_cluster(spec, kubelet="stub")`` starts the node agent
  (:mod:`mig_spawner.demo.controlplane.agent`) for a cluster spec and returns a :class:`RealCluster`
  whose helpers mirror :class:`mig_spawner.demo.emulator.EmulatedCluster`'s read side and its
  node changes (cordon, label); on teardown the agent stops and its pods, nodes and leases,
  and the test namespaces' ResourceQuotas, are deleted.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mig_spawner.demo.controlplane import (
    BUILD_COMMAND,
    ControlPlane,
    cache_dir,
    kubeconfig_dict,
    missing_binaries,
    write_kubeconfig,
)

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT.parent / "shared" / "z2jh" / "chart" / "jupyterhub"
RBAC_DIR = ROOT / "helm-values" / "rbac"
HUB_NAMESPACE = "jhub"
TEST_NAMESPACES = (HUB_NAMESPACE, "research")
REQUIRE = os.environ.get("MIG_SPAWNER_REQUIRE_REAL_K8S") == "1"


def _skip_or_fail(message: str) -> None:
    if REQUIRE:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def render_hub_rbac(namespace: str = HUB_NAMESPACE) -> list[dict[str, Any]]:
    """The Z2JH hub Role, RoleBinding and ServiceAccount as the real helm renders them."""
    # the Makefile's helm when set, else the one make k8s built
    helm = os.environ.get("MIG_SPAWNER_HELM") or cache_dir() / "helm"
    out = subprocess.run(
        [
            str(helm),
            "template",
            "jhub",
            str(CHART),
            "--namespace",
            namespace,
            "--show-only",
            "templates/hub/rbac.yaml",
            "--show-only",
            "templates/hub/serviceaccount.yaml",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def our_cluster_rbac(
    namespace: str = HUB_NAMESPACE, service_account: str = "hub", suffix: str = ""
) -> list[dict[str, Any]]:
    """helm-values/rbac/ as shipped, bound to ``namespace/service_account``."""
    docs = [yaml.safe_load(p.read_text()) for p in sorted(RBAC_DIR.glob("*.yaml"))]
    for doc in docs:
        doc["metadata"]["name"] += suffix
        if doc["kind"] in ("Role", "RoleBinding"):  # the waiting line's, in the hub's namespace
            doc["metadata"]["namespace"] = namespace
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            doc["roleRef"]["name"] += suffix
            doc["subjects"] = [
                {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
            ]
    return docs


def hub_kubeconfig(plane: ControlPlane, path: Path, service_account: str = "hub") -> Path:
    token = plane.service_account_token(HUB_NAMESPACE, service_account)
    config = kubeconfig_dict(
        plane.url, plane.ca, token=token, user=service_account, namespace=HUB_NAMESPACE
    )
    return write_kubeconfig(path, config)


def require_real_control_plane() -> None:
    """Skip (or, under ``make test``, fail) when ``make k8s`` has not built the binaries."""
    missing = missing_binaries()
    if not (cache_dir() / "helm").exists():
        missing.append("helm")
    if missing:
        _skip_or_fail(
            f"real control plane not built ({', '.join(missing)} missing in {cache_dir()}); "
            f"run `{BUILD_COMMAND}`"
        )


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    require_real_control_plane()
    started = time.monotonic()
    with ControlPlane() as plane:
        plane.started_in = time.monotonic() - started
        for ns in TEST_NAMESPACES:
            plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for doc in render_hub_rbac() + our_cluster_rbac():
            plane.apply(doc)
        for ns in TEST_NAMESPACES:  # the ServiceAccount admission plugin needs "default"
            plane._wait(
                f"ServiceAccount {ns}/default",
                lambda ns=ns: plane.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
            )
        yield plane


class RealCluster:
    """The read side of :class:`EmulatedCluster`, on the real API (as the admin)."""

    def __init__(self, plane: ControlPlane, spec: dict[str, Any], agent: subprocess.Popen):
        self.plane, self.spec, self.agent = plane, spec, agent
        self.node_names = [n["name"] for n in spec["nodes"]]

    @property
    def url(self) -> str:
        return self.plane.url

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def _items(self, path: str) -> list[dict[str, Any]]:
        status, body = self.plane.request("GET", path)
        assert status == 200, (path, status, body)
        return body["items"]

    @property
    def pods(self) -> list[dict[str, Any]]:
        return self._items("/api/v1/pods")

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return self._items("/api/v1/nodes")

    @property
    def events(self) -> list[dict[str, Any]]:
        return self._items("/api/v1/events")

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.plane.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def node(self, name: str) -> dict[str, Any] | None:
        return self.plane.get(f"/api/v1/nodes/{name}")

    def create_pod(self, pod: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        status, body = self.plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        assert status == 201, body
        return body

    def delete_pod(self, name: str, namespace: str = "default", grace: int | None = None):
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        if grace is not None:
            path += f"?gracePeriodSeconds={grace}"
        return self.plane.request("DELETE", path)

    def _patch_node(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/nodes/{name}"
        status, body = self.plane.request("PATCH", path, patch, "application/merge-patch+json")
        assert status == 200, (path, status, body)
        return body

    def cordon(self, name: str, unschedulable: bool = True) -> dict[str, Any]:
        """``kubectl cordon`` (or uncordon with ``unschedulable=False``)."""
        return self._patch_node(name, {"spec": {"unschedulable": True if unschedulable else None}})

    def uncordon(self, name: str) -> dict[str, Any]:
        return self.cordon(name, unschedulable=False)

    def label_node(self, name: str, labels: dict[str, str | None]) -> dict[str, Any]:
        """Set (or, with ``None``, remove) node labels: a JSON merge patch, as ``kubectl
        label`` sends."""
        return self._patch_node(name, {"metadata": {"labels": labels}})

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate(self)
            if result:
                return result
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")

    def nodes_ready(self) -> bool:
        nodes = {n["metadata"]["name"]: n for n in self.nodes}
        for name in self.node_names:
            node = nodes.get(name)
            if node is None:
                return False
            taints = {t["key"] for t in (node.get("spec") or {}).get("taints") or []}
            if "node.kubernetes.io/not-ready" in taints:
                return False
        return True


def _forget_waiting_lines(plane: ControlPlane) -> None:
    """Delete the waiting lines earlier hubs saved (``mig-spawner-line-*`` ConfigMaps): a
    hub reads them as the line of a hub that restarted. Done when a test's cluster starts,
    since the previous hub saves its line when its watch stops, after that test's cleanup."""
    for ns in (*TEST_NAMESPACES, "default"):
        _status, body = plane.request("GET", f"/api/v1/namespaces/{ns}/configmaps")
        for item in (body or {}).get("items") or []:
            name = item["metadata"]["name"]
            if name.startswith("mig-spawner-line-"):
                plane.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/{name}")


def _cleanup(plane: ControlPlane, node_names: list[str]) -> None:
    for ns in (*TEST_NAMESPACES, "default"):
        plane.request("DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0")
        plane.request("DELETE", f"/api/v1/namespaces/{ns}/resourcequotas")
        plane.request("DELETE", f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims")
    plane.request("DELETE", "/apis/resource.k8s.io/v1/resourceslices")
    for name in node_names:
        plane.request("DELETE", f"/api/v1/nodes/{name}")
        plane.request(
            "DELETE", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _status, body = plane.request("GET", "/api/v1/pods")
        left = [
            p for p in body["items"] if p["metadata"]["namespace"] in (*TEST_NAMESPACES, "default")
        ]
        if not left:
            break
        time.sleep(0.1)


@pytest.fixture
def real_cluster(control_plane, tmp_path):
    started: list[RealCluster] = []

    def start(
        spec: dict[str, Any],
        kubelet: str = "stub",
        timeout: float = 60,
        start_delay: float = 0,
        dra: bool = False,
    ) -> RealCluster:
        spec = copy.deepcopy(spec)
        _forget_waiting_lines(control_plane)
        path = tmp_path / f"cluster-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(spec))
        log = open(tmp_path / f"agent-{len(started)}.log", "wb")  # noqa: SIM115
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mig_spawner.demo.controlplane.agent",
                str(path),
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--kubelet",
                kubelet,
                "--start-delay",
                str(start_delay),
                "--verbose",
                *(["--dra"] if dra else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        cluster = RealCluster(control_plane, spec, agent)
        started.append(cluster)
        deadline = time.monotonic() + timeout
        while not cluster.nodes_ready():
            if agent.poll() is not None or time.monotonic() > deadline:
                text = (tmp_path / f"agent-{len(started) - 1}.log").read_text()
                raise RuntimeError(f"node agent did not get its nodes Ready:\n{text[-3000:]}")
            time.sleep(0.1)
        return cluster

    yield start
    for cluster in started:
        if cluster.agent.poll() is None:
            cluster.agent.send_signal(signal.SIGTERM)
            try:
                cluster.agent.wait(15)
            except subprocess.TimeoutExpired:
                cluster.agent.kill()
                cluster.agent.wait()
    _cleanup(control_plane, [n for c in started for n in c.node_names])


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
