"""The real Kueue manager on the real control plane, for the shared-quota tests (issue 22).

* ``kueue`` (session): ``make k8s`` builds Kueue (pinned in tests/controlplane/kueue/go.mod,
  next to the control plane in :func:`~mig_spawner.demo.controlplane.launcher.cache_dir`);
  this fixture applies Kueue's own CRDs, webhook configurations and APIServices, read from
  the pinned module's source in the Go module cache (never copied here), starts the manager
  against ``control_plane`` with the admin kubeconfig, and returns a :class:`Kueue`. It also
  creates the managed namespace :data:`NAMESPACE` with a hub's RBAC (the Z2JH hub Role and
  ServiceAccount, our ClusterRole, and Kueue's ``batch-user`` role: read Workloads,
  LocalQueues and their pending workloads), so a hub can spawn there.
* ``kueue_queues`` (function): the same :class:`Kueue`, cleaned (queues, flavors,
  workloads, pods, jobs) after the test.

Kueue manages only namespaces labeled :data:`MANAGED_LABEL` (its
``managedJobsNamespaceSelector``, and the namespace selector of its pod and job webhooks):
every other test of the session, and every pod created elsewhere, never meets Kueue, even
when its manager is down.

How the API server reaches the manager, and what Kueue reads from its module: see
tests/kueue_manifests.py.

A missing binary FAILS the test, naming ``make k8s``: never a skip (CI builds it).
"""

from __future__ import annotations

import base64
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from built import die_with_parent, require_built
from kueue_manifests import (
    MANAGED_LABEL,
    NAMESPACE,
    SHARED_CERT_DIRS,
    WEBHOOKS,
    apiservices,
    crds,
    ensure_shared_cert,
    managed_namespace,
    module_source,
    webhook_configurations,
)

from mig_spawner.demo.controlplane.launcher import ControlPlane, kueue_binary
from mig_spawner.demo.controlplane.pki import issue_cert
from mig_spawner.demo.ports import free_port, host_address

SYSTEM_NAMESPACE = "kueue-system"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GATE = "kueue.x-k8s.io/admission"
API = "/apis/kueue.x-k8s.io/v1beta2"
VISIBILITY = "/apis/visibility.kueue.x-k8s.io/v1beta2"
PLURALS = {
    "CustomResourceDefinition": "customresourcedefinitions",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    "APIService": "apiservices",
    "Service": "services",
    "EndpointSlice": "endpointslices",
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "ResourceFlavor": "resourceflavors",
    "ClusterQueue": "clusterqueues",
    "LocalQueue": "localqueues",
    "Cohort": "cohorts",
    "WorkloadPriorityClass": "workloadpriorityclasses",
    "Pod": "pods",
    "Job": "jobs",
    "ConfigMap": "configmaps",
}


def require_kueue() -> Path:
    return require_built("Kueue", kueue_binary())


class Kueue:
    """The running manager, and helpers to make queues and read workloads (as the admin)."""

    def __init__(self, plane: ControlPlane, workdir: Path, source: Path) -> None:
        self.plane, self.workdir, self.source = plane, workdir, source
        self.namespace = NAMESPACE
        self.webhook_port = free_port()
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.host = host_address()
        self.visibility_port = free_port(self.host)
        self.log = workdir / "kueue.log"
        self.config = workdir / "config.yaml"
        self.proc: subprocess.Popen | None = None
        self._gc_probe: str | None = None
        #: seconds from the manager's start to all of it answering; from the fixture's start
        self.manager_ready_in = self.started_in = 0.0

    # -- generic admin access --------------------------------------------------------------

    @staticmethod
    def path(obj: dict[str, Any], name: bool = True) -> str:
        api, meta = obj["apiVersion"], obj["metadata"]
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        return f"{base}{ns}/{PLURALS[obj['kind']]}" + (f"/{meta['name']}" if name else "")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as the admin (field manager ``mig-spawner-tests``)."""
        path = self.path(obj) + "?fieldManager=mig-spawner-tests&force=true"
        status, body = self.plane.request("PATCH", path, obj, "application/apply-patch+yaml")
        if status not in (200, 201):
            raise RuntimeError(f"apply {obj['kind']} {obj['metadata']['name']}: {status} {body}")
        return body

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        status, body = self.plane.request("POST", self.path(obj, name=False), obj)
        if status != 201:
            raise RuntimeError(f"create {obj['kind']} {obj['metadata']['name']}: {status} {body}")
        return body

    def delete(self, obj: dict[str, Any]) -> tuple[int, Any]:
        """Delete as ``kubectl delete`` does (dependents in the background); a Job only
        once the garbage collector would delete its Workload (:meth:`wait_garbage_collector`)."""
        if obj["kind"] == "Job":
            self.wait_garbage_collector()
        return self.plane.request("DELETE", self.path(obj) + "?propagationPolicy=Background")

    def items(self, path: str) -> list[dict[str, Any]]:
        status, body = self.plane.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body["items"]

    def wait(self, what: str, probe, timeout: float = 60.0) -> Any:
        """``probe()``'s first truthy result; a timeout names ``what`` and the log's end."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the Kueue manager exited with {self.proc.returncode} while waiting for "
                    f"{what}; its log ({self.log}) ends:\n{self.log_tail()}"
                )
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out waiting for {what}; {self.log} ends:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    # -- Kueue's objects --------------------------------------------------------------------

    def resource_flavor(self, name: str, node_labels: dict[str, str] | None = None) -> dict:
        spec = {"nodeLabels": node_labels} if node_labels else {}
        return self.apply(_kueue_obj("ResourceFlavor", name, spec))

    def cluster_queue(
        self,
        name: str,
        quotas: dict[str, dict[str, str | int]],
        *,
        cohort: str | None = None,
        borrowing_limit: dict[str, str | int] | None = None,
        lending_limit: dict[str, str | int] | None = None,
        preemption: dict[str, Any] | None = None,
    ) -> dict:
        """A ClusterQueue for every namespace, one resource group: ``quotas`` is
        ``{flavor: {resource: nominal quota}}`` (a resource a flavor leaves out has 0 there);
        the limits are per resource name, for every flavor."""
        covered: list[str] = []
        for resources in quotas.values():
            covered += [r for r in resources if r not in covered]
        flavors = []
        for flavor, resources in quotas.items():
            entries = []
            for resource in covered:
                entry: dict[str, Any] = {
                    "name": resource,
                    "nominalQuota": resources.get(resource, 0),
                }
                if borrowing_limit and resource in borrowing_limit:
                    entry["borrowingLimit"] = borrowing_limit[resource]
                if lending_limit and resource in lending_limit:
                    entry["lendingLimit"] = lending_limit[resource]
                entries.append(entry)
            flavors.append({"name": flavor, "resources": entries})
        spec: dict[str, Any] = {
            "namespaceSelector": {},  # every namespace (a missing one matches none)
            "resourceGroups": [{"coveredResources": covered, "flavors": flavors}],
        }
        if cohort:
            spec["cohortName"] = cohort
        if preemption:
            spec["preemption"] = preemption
        return self.apply(_kueue_obj("ClusterQueue", name, spec))

    def local_queue(self, name: str, cluster_queue: str, namespace: str = NAMESPACE) -> dict:
        obj = _kueue_obj("LocalQueue", name, {"clusterQueue": cluster_queue}, namespace)
        return self.apply(obj)

    def workloads(self, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return self.items(f"{API}/namespaces/{namespace}/workloads")

    def workload_of(self, owner: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        """The Workload owned by the pod or job named ``owner``, if there is one."""
        for wl in self.workloads(namespace):
            if any(o["name"] == owner for o in wl["metadata"].get("ownerReferences") or []):
                return wl
        return None

    def wait_workload(self, owner: str, namespace: str = NAMESPACE, timeout: float = 60) -> dict:
        return self.wait(f"a Workload for {namespace}/{owner}",
                         lambda: self.workload_of(owner, namespace), timeout)  # fmt: skip

    def wait_admitted(self, owner: str, namespace: str = NAMESPACE, timeout: float = 60) -> dict:
        """The Workload of pod or job ``owner`` once its ``Admitted`` condition is True."""

        def admitted():
            wl = self.workload_of(owner, namespace)
            return wl if wl and _true(wl, "Admitted") else None

        return self.wait(f"the Workload of {namespace}/{owner} admitted", admitted, timeout)

    def pending_workloads(self, local_queue: str, namespace: str = NAMESPACE) -> list[dict]:
        """The visibility API's pending workloads of a LocalQueue (through the aggregator),
        each with ``positionInClusterQueue`` and ``positionInLocalQueue``."""
        path = f"{VISIBILITY}/namespaces/{namespace}/localqueues/{local_queue}/pendingworkloads"
        status, body = self.plane.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body["items"]

    def clean(self, timeout: float = 60.0) -> None:
        """Delete the managed namespace's pods, jobs, workloads and local queues, then every
        cluster queue, cohort and resource flavor, and wait until they are gone (Kueue's
        finalizers go once nothing uses them); and, as tests/realk8s.py does for its
        namespaces, the namespace's ResourceQuotas and the waiting lines hubs saved there."""
        ns = f"/namespaces/{self.namespace}"
        self.plane.request("DELETE", f"/api/v1{ns}/resourcequotas")
        for item in self.items(f"/api/v1{ns}/configmaps"):
            if item["metadata"]["name"].startswith("mig-spawner-line-"):
                self.plane.request("DELETE", f"/api/v1{ns}/configmaps/{item['metadata']['name']}")
        kinds = [
            (f"/apis/batch/v1{ns}/jobs", "?propagationPolicy=Background"),
            (f"/api/v1{ns}/pods", "?gracePeriodSeconds=0"),
            (f"{API}{ns}/workloads", ""),
            (f"{API}{ns}/localqueues", ""),
            (f"{API}/clusterqueues", ""),
            (f"{API}/cohorts", ""),
            (f"{API}/resourceflavors", ""),
            (f"{API}/workloadpriorityclasses", ""),
        ]
        for path, query in kinds:
            self.plane.request("DELETE", path + query)
        for path, _ in kinds:
            self.wait(f"{path} emptied", lambda path=path: not self.items(path), timeout)

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Kueue:
        """Install Kueue's CRDs, start the manager, then register its webhooks and its
        visibility API; return once the API server gets answers from all three."""
        started = time.monotonic()
        for directory in SHARED_CERT_DIRS:
            ensure_shared_cert(directory)
        certs = self.workdir / "webhook-certs"
        issue_cert(certs, "tls", "/CN=kueue-webhook", "serverAuth", "IP:127.0.0.1",
                   ca=self.plane.ca)  # fmt: skip
        ca_bundle = _b64(self.plane.ca)
        url = f"https://127.0.0.1:{self.webhook_port}"
        self.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": SYSTEM_NAMESPACE}})  # fmt: skip
        self._install_crds(crds(self.source, url, ca_bundle))
        self._gc_probe = self._start_gc_probe()
        self.config.write_text(yaml.safe_dump(self._configuration(certs)))
        spawned = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(require_kueue()), f"--config={self.config}",
                 f"--kubeconfig={self.plane.kubeconfig}", "--zap-log-level=info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, preexec_fn=die_with_parent,
            )  # fmt: skip
        ready = f"http://127.0.0.1:{self.health_port}/readyz"
        self.wait("the manager's /readyz (its webhook server serving)",
                  lambda: _http_ok(ready), timeout)  # fmt: skip
        # Registered only now: with the configurations and no manager, the API server would
        # refuse Kueue's objects (failurePolicy Fail).
        for doc in webhook_configurations(self.source, url, ca_bundle):
            self.apply(doc)
        # a dry-run create goes through Kueue's defaulting and validating webhooks
        probe = _kueue_obj("ResourceFlavor", "webhook-probe", {})
        path = self.path(probe, name=False) + "?dryRun=All"
        self.wait("Kueue's webhooks answering the API server",
                  lambda: self.plane.request("POST", path, probe)[0] == 201, timeout)  # fmt: skip
        self._register_visibility()
        self.wait("the visibility API answering through the aggregator",
                  lambda: self.plane.request("GET", VISIBILITY)[0] == 200, timeout)  # fmt: skip
        self.manager_ready_in = time.monotonic() - spawned
        self.started_in = time.monotonic() - started
        return self

    def _install_crds(self, docs: list[dict[str, Any]]) -> None:
        """Apply the CRDs and wait until they are served: the manager's first discovery
        must see every kind, or it exits ("no matches for kind Workload")."""
        for crd in docs:
            self.apply(crd)
        for crd in docs:
            path = self.path(crd)
            self.wait(
                f"CRD {crd['metadata']['name']} established",
                lambda path=path: _true(self.plane.get(path) or {}, "Established"),
            )
        self.wait("the kueue.x-k8s.io/v1beta2 API discoverable", lambda: self.plane.get(API))

    def wait_garbage_collector(self) -> None:
        """Return once kube-controller-manager's garbage collector deletes Kueue's kinds.

        A deleted Job's Workload goes only that way (the Job owns it; Kueue releases its
        quota once it is gone), and the garbage collector looks for new kinds every 30 s:
        a Job deleted within 30 s of Kueue's CRDs being installed kept its quota until then,
        which no long-running cluster does. :meth:`delete` waits for it before deleting a
        Job; the fixture does not (most tests never need it, and it costs up to 30 s)."""
        if self._gc_probe is not None:
            self.wait("the garbage collector to know Kueue's kinds (it looks every 30 s)",
                      lambda: self.plane.get(self._gc_probe) is None, timeout=90)  # fmt: skip
            self._gc_probe = None

    def _start_gc_probe(self) -> str:
        """A LocalQueue owned by a ConfigMap deleted at once: the queue's path, which the
        garbage collector deletes once it watches Kueue's kinds."""
        owner = self.apply({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "gc-probe",
                                               "namespace": SYSTEM_NAMESPACE}})  # fmt: skip
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gc-probe",
               "uid": owner["metadata"]["uid"]}  # fmt: skip
        queue = _kueue_obj("LocalQueue", "gc-probe", {"clusterQueue": "gc-probe"},
                           SYSTEM_NAMESPACE)  # fmt: skip
        queue["metadata"]["ownerReferences"] = [ref]
        self.apply(queue)
        self.plane.request("DELETE", f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/configmaps/gc-probe")
        return self.path(queue)

    def _configuration(self, certs: Path) -> dict[str, Any]:
        """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2; apis/config/v1beta2)."""
        return {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": SYSTEM_NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": f"127.0.0.1:{self.metrics_port}"},
            "webhook": {"host": "127.0.0.1", "port": self.webhook_port, "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "managedJobsNamespaceSelector": {"matchLabels": {MANAGED_LABEL: "true"}},
            "integrations": {"frameworks": ["pod", "batch/job"]},
            "visibilityServer": {"bindAddress": self.host, "bindPort": self.visibility_port},
        }

    def _register_visibility(self) -> None:
        """Kueue's APIServices, their Service selector-less, its endpoint the manager."""
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "visibility-server", "namespace": SYSTEM_NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": self.visibility_port}]},
        }  # fmt: skip
        self.apply(service)
        self.apply({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "visibility-server-manager", "namespace": SYSTEM_NAMESPACE,
                         "labels": {"kubernetes.io/service-name": "visibility-server"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.host], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.visibility_port, "protocol": "TCP"}],
        })  # fmt: skip
        for doc in apiservices(self.source):
            self.apply(doc)

    def stop(self) -> None:
        """Unregister the webhooks and APIServices first: with them and no manager, the API
        server would refuse Kueue's objects and report the visibility API unavailable."""
        for name, kind in zip(WEBHOOKS, ("mutating", "validating"), strict=True):
            path = f"/apis/admissionregistration.k8s.io/v1/{kind}webhookconfigurations/{name}"
            self.plane.request("DELETE", path)
        for doc in apiservices(self.source):
            self.plane.request("DELETE", self.path(doc))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` ({} when there is none)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond
    return {}


def _true(obj: dict[str, Any], kind: str) -> bool:
    return condition(obj, kind).get("status") == "True"


def _kueue_obj(kind: str, name: str, spec: dict, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": kind, "metadata": meta, "spec": spec}


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _managed_namespace(kueue: Kueue) -> None:
    for doc in managed_namespace(NAMESPACE, kueue.source):
        kueue.apply(doc)
    default = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"
    kueue.wait(f"ServiceAccount {NAMESPACE}/default", lambda: kueue.plane.get(default))


@pytest.fixture(scope="session")
def kueue(control_plane, tmp_path_factory):
    """The real Kueue manager on the session's control plane (see the module doc)."""
    require_kueue()
    source = module_source()
    manager = Kueue(control_plane, tmp_path_factory.mktemp("kueue"), source)
    try:
        manager.start()
        _managed_namespace(manager)
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def kueue_queues(kueue):
    """:class:`Kueue`, with the managed namespace's queues and workloads deleted after."""
    yield kueue
    kueue.clean()
