"""What the Kueue harness (tests/kueue_harness.py) reads from Kueue's own module source,
and how it points the API server at the manager.

Everything comes from the pinned module (tests/controlplane/kueue/go.mod) in the Go module
cache, which ``make k8s`` fills when it builds Kueue: CRDs, webhook configurations,
APIServices and RBAC are Kueue's own, never copied into this repository, changed only where
this machine needs it (below).

How the API server reaches the manager:

* **Webhooks** (pods get Kueue's scheduling gate; queues and workloads are defaulted and
  validated) and the **CRD conversion** webhook: by URL, ``https://127.0.0.1:<port>``, with
  a serving certificate this harness signs with the control plane's CA. Kueue's internal
  certificate management is off: it would issue a certificate for the in-cluster Service
  name and inject its CA itself, which needs the Service routed; a URL needs nothing.
* The **visibility API** (``visibility.kueue.x-k8s.io``, the pending workloads and their
  positions) is an extension API server inside the manager, registered with Kueue's own
  APIServices. The aggregator only proxies to a Service, so the Service is selector-less
  with an EndpointSlice on this machine's non-loopback address
  (:func:`~mig_spawner.demo.ports.host_address`; endpoints may not be loopback), which
  kube-apiserver dials itself (``--enable-aggregator-routing``: no kube-proxy here). The
  APIServices skip TLS verification, as Kueue's release manifests do.

Two certificate paths are hard-coded in Kueue when its internal certificate management is
off: the visibility server's (``/visibility``) and the metrics server's
(``/etc/kueue/metrics/certs``). Nothing verifies those two certificates here, so one
self-signed pair is made once per machine, under a lock, and shared by every session
(never replaced once valid, so a running manager never reads a half-written pair). That
needs root, as the suite has in CI; elsewhere the test fails saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from realk8s import our_cluster_rbac, render_hub_rbac

from mig_spawner.demo.controlplane.launcher import BUILD_COMMAND

MODULE = Path(__file__).resolve().parent / "controlplane" / "kueue"
#: the label that puts a namespace under Kueue (its jobs, pods and webhooks)
MANAGED_LABEL = "kueue.mig-spawner.test/managed"
#: the managed namespace the fixture makes, with a hub's RBAC
NAMESPACE = "jhub-kueue"
#: Kueue's fixed certificate paths when its internal certificate management is off
SHARED_CERT_DIRS = (Path("/visibility"), Path("/etc/kueue/metrics/certs"))
WEBHOOKS = ("kueue-mutating-webhook-configuration", "kueue-validating-webhook-configuration")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # Kueue's CRDs are ~2 MB of YAML


def module_source() -> Path:
    """The pinned Kueue module's source in the Go module cache (``make k8s`` downloaded it)."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    try:
        done = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kueue"],
            cwd=MODULE, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.fail("go is not on PATH: Kueue's manifests are read from its module", pytrace=False)
    source = Path(done.stdout.strip())
    if done.returncode or not (source / "config" / "components").is_dir():
        pytest.fail(
            f"Kueue's module source is not in the module cache ({done.stderr.strip()}); "
            f"`{BUILD_COMMAND}` downloads it",
            pytrace=False,
        )
    return source


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d]


def ensure_shared_cert(directory: Path) -> None:
    """A self-signed ``tls.crt``/``tls.key`` in ``directory``, made once (see the module doc)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        pytest.fail(f"Kueue reads a certificate from {directory}, which this user cannot "
                    "create (run the Kueue tests as root, as CI does)", pytrace=False)  # fmt: skip
    with open(directory / ".mig-spawner.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        crt, key = directory / "tls.crt", directory / "tls.key"
        with contextlib.suppress(OSError, ssl.SSLError):
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(crt, key)
            return
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
             "-subj", "/CN=kueue-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", f"{key}.new", "-out", f"{crt}.new"],
            check=True, capture_output=True,
        )  # fmt: skip
        os.replace(f"{key}.new", key)
        os.replace(f"{crt}.new", crt)


def webhook_configurations(source: Path, url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, for the pod and batch/job integrations and Kueue's
    own kinds only, called by URL; the pod and job ones only in managed namespaces."""
    docs = load(source / "config" / "components" / "webhook" / "manifests.yaml")
    kept = []
    for doc, name in zip(docs, WEBHOOKS, strict=True):
        doc["metadata"] = {"name": name}
        hooks = []
        for hook in doc["webhooks"]:
            rule = hook["rules"][0]
            groups, resources = set(rule["apiGroups"]), set(rule["resources"])
            workloads = (groups == {""} and resources == {"pods"}) or groups == {"batch"}
            if not (workloads or groups == {"kueue.x-k8s.io"}):
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": ca_bundle}
            if workloads:
                hook["namespaceSelector"] = {"matchLabels": {MANAGED_LABEL: "true"}}
            hooks.append(hook)
        doc["webhooks"] = hooks
        kept.append(doc)
    return kept


def crds(source: Path, url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's CRDs, the ones its kustomization gives a conversion webhook calling ours."""
    crd_dir = source / "config" / "components" / "crd"
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    converted = set()
    for patch in kustomization.get("patches") or []:
        if Path(patch["path"]).name.startswith("webhook_in_"):
            converted.add(load(crd_dir / patch["path"])[0]["metadata"]["name"])
    crds = [load(crd_dir / p)[0] for p in kustomization["resources"]]
    for crd in crds:
        if crd["metadata"]["name"] in converted:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": url + "/convert", "caBundle": ca_bundle},
                    "conversionReviewVersions": ["v1"],
                },
            }
    return crds


def apiservices(source: Path) -> list[dict[str, Any]]:
    """Kueue's APIServices for its visibility API (every version it serves), as released."""
    visibility = source / "config" / "components" / "visibility"
    return [load(p)[0] for p in sorted(visibility.glob("apiservice_*.yaml"))]


def batch_user_roles(source: Path) -> list[dict[str, Any]]:
    """Kueue's ``kueue-batch-user-role`` and the ClusterRoles it aggregates (those labeled
    ``rbac.kueue.x-k8s.io/batch-user``), named as Kueue's release names them."""
    roles = []
    for path in sorted((source / "config" / "components" / "rbac").glob("*.yaml")):
        for doc in load(path):
            if doc.get("kind") != "ClusterRole":  # also kustomization.yaml
                continue
            labels = doc["metadata"].get("labels") or {}
            if (
                labels.get("rbac.kueue.x-k8s.io/batch-user") == "true"
                or path.name == "batch_user_role.yaml"
            ):
                doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
                roles.append(doc)
    return roles


def managed_namespace(namespace: str, source: Path) -> list[dict[str, Any]]:
    """``namespace``, labeled managed, with a hub's RBAC: Z2JH's hub Role, RoleBinding and
    ServiceAccount (as tests/realk8s.py renders them), our ClusterRole bound to its hub
    (names suffixed with the namespace), and Kueue's ``kueue-batch-user-role`` bound there
    (read Workloads, LocalQueues and their pending workloads in the visibility API)."""
    docs = [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": namespace, "labels": {MANAGED_LABEL: "true"}}}]  # fmt: skip
    docs += render_hub_rbac(namespace) + our_cluster_rbac(namespace, suffix=f"-{namespace}")
    docs += batch_user_roles(source)
    docs.append({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "kueue-batch-user", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "kueue-batch-user-role"},
        "subjects": [{"kind": "ServiceAccount", "name": "hub", "namespace": namespace}],
    })  # fmt: skip
    return docs
