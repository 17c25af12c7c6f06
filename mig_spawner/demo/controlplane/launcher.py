"""Start a real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-scheduler
and kube-controller-manager, built from the Go module proxy by
``tests/controlplane/build.sh`` (``make k8s``) into :func:`cache_dir`.

Everything lives in one temporary directory (certificates, the service-account key pair,
etcd's data, logs, kubeconfigs) that :meth:`ControlPlane.stop` removes after stopping the
processes. The processes get ``PR_SET_PDEATHSIG`` so that they die with the launching
process even when it is killed outright, and an ``atexit`` hook stops a control plane that
was never stopped.

* kube-apiserver serves HTTPS on ``127.0.0.1:<free port>`` with a CA and serving
  certificate generated here, ``--authorization-mode=Node,RBAC``, client-certificate
  authentication, and a service-account issuer whose signing key is generated here (so
  ``TokenRequest`` works and a hub can authenticate as a ServiceAccount).
* The aggregation layer is on (a front-proxy CA and client certificate from :mod:`.pki`,
  ``--enable-aggregator-routing``), so an extension API server registered with an
  APIService (Kueue's visibility API, tests/kueue_harness.py) answers through the API
  server, reached at its Service's endpoint address.
* The harness gets an admin credential (client certificate, ``O=system:masters``) in
  :attr:`ControlPlane.kubeconfig`; the scheduler and controller manager authenticate as
  ``system:kube-scheduler`` and ``system:kube-controller-manager``, which the bootstrap RBAC
  policy grants exactly what they need.
* Nodes are not part of this: :mod:`mig_spawner.demo.controlplane.agent` registers them.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..ports import free_port
from .pki import FRONT_PROXY_CLIENT, kubeconfig_dict, make_pki, write_kubeconfig

#: The pinned versions; tests check them against tests/controlplane/*/go.mod.
K8S_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"
#: github.com/prometheus/prometheus's module version (v0.316.0 is Prometheus 3.16.0)
PROMETHEUS_VERSION = "v0.316.0"
#: sigs.k8s.io/kueue (the shared-quota tests run its manager against this control plane)
KUEUE_VERSION = "v0.17.0"
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")
BUILD_COMMAND = "make k8s"
#: etcd revisions 1..OLD_REVISIONS predate the API server: every watch cache says "too old".
OLD_REVISIONS = 20


class NotBuilt(RuntimeError):
    """The control-plane binaries are not in the cache."""


def cache_dir() -> Path:
    """Where ``tests/controlplane/build.sh`` puts the binaries (keyed by the k8s version)."""
    if os.environ.get("MIG_SPAWNER_K8S_CACHE"):
        return Path(os.environ["MIG_SPAWNER_K8S_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mig-spawner" / f"k8s-{K8S_VERSION}"


def prometheus_binary(bin_dir: Path | None = None) -> Path:
    """Where ``make k8s`` puts Prometheus (the idle-server tests run it), next to the rest."""
    return (bin_dir or cache_dir()) / "prometheus"


def kueue_binary(bin_dir: Path | None = None) -> Path:
    """Where ``make k8s`` puts Kueue's manager (tests/kueue_harness.py runs it)."""
    return (bin_dir or cache_dir()) / "kueue"


def missing_binaries(bin_dir: Path | None = None) -> list[str]:
    bin_dir = bin_dir or cache_dir()
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


def require_binaries(bin_dir: Path | None = None) -> Path:
    bin_dir = bin_dir or cache_dir()
    missing = missing_binaries(bin_dir)
    if missing:
        raise NotBuilt(
            f"the real control plane is not built ({', '.join(missing)} missing in {bin_dir}); "
            f"build it with `{BUILD_COMMAND}` (tests/controlplane/build.sh)"
        )
    return bin_dir


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # SIGKILL, not SIGTERM: when the launcher dies outright, etcd goes too, and a
    # kube-apiserver told to shut down gracefully then waits for etcd forever.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_LIVE: set[ControlPlane] = set()


@atexit.register
def _stop_leftovers() -> None:
    for plane in list(_LIVE):
        plane.stop()


class ControlPlane:
    """A running control plane; use as a context manager or call :meth:`start`/:meth:`stop`.

    ``apiserver_args`` adds (or overrides, ``--flag=value``) kube-apiserver flags."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        workdir: Path | None = None,
        apiserver_args: list[str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.bin_dir = require_binaries(bin_dir)
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="mig-spawner-k8s-"))
        self.pki = self.dir / "pki"
        self.logs = self.dir / "logs"
        self.apiserver_args = list(apiserver_args or [])
        self.timeout = timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.etcd_url = ""
        self.port = 0
        self.kubeconfig = self.dir / "kubeconfig"

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.pki / "ca.crt"

    def start(self) -> ControlPlane:
        _LIVE.add(self)
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            make_pki(self.pki)
            self._start_etcd()
            self._start_apiserver()
            write_kubeconfig(
                self.kubeconfig,
                kubeconfig_dict(
                    self.url, self.ca, cert=self.pki / "admin.crt", key=self.pki / "admin.key"
                ),
            )
            for name in ("scheduler", "controller-manager"):
                write_kubeconfig(
                    self.dir / f"{name}.kubeconfig",
                    kubeconfig_dict(
                        self.url,
                        self.ca,
                        cert=self.pki / f"{name}.crt",
                        key=self.pki / f"{name}.key",
                        user=name,
                    ),
                )
            self._start_scheduler()
            self._start_controller_manager()
            self._wait(
                "the default ServiceAccount (controller manager up)",
                lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default"),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop every process (SIGTERM, then SIGKILL after ``grace``) in reverse start order
        and remove the directory."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + grace
        for proc in reversed(list(self.procs.values())):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.discard(self)

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            )
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait(self, what: str, probe, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        last: Exception | None = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                        + self.log_tail(name)
                    )
            try:
                result = probe()
                if result:
                    return result
            except Exception as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}: {last}")

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",  # test data: no need to survive a power cut
                "--log-level=warn",
            ],
        )
        self._wait("etcd /health", lambda: _http_ok(self.etcd_url + "/health"))
        # Move etcd's revision past OLD_REVISIONS before kube-apiserver starts: its watch
        # caches start from a list at the then-current revision, so a watch from a
        # resourceVersion below it is "too old" (410 Expired), as it is on any cluster that
        # has run for a while, where on a fresh etcd rv 1 would still be in every cache.
        for i in range(OLD_REVISIONS):
            key = base64.b64encode(f"/mig-spawner-harness/{i}".encode()).decode()
            _post_json(self.etcd_url + "/v3/kv/put", {"key": key, "value": ""})

    def _start_apiserver(self) -> None:
        self.port = free_port()
        p = self.pki
        flags = {
            "--etcd-servers": self.etcd_url,
            "--bind-address": "127.0.0.1",
            "--advertise-address": "127.0.0.1",
            # the "kubernetes" Service's endpoints may not be loopback addresses; our pods get
            # KUBERNETES_SERVICE_HOST/PORT pointing at the API server directly instead
            "--endpoint-reconciler-type": "none",
            "--secure-port": str(self.port),
            "--cert-dir": str(self.dir / "apiserver-certs"),
            "--tls-cert-file": str(p / "apiserver.crt"),
            "--tls-private-key-file": str(p / "apiserver.key"),
            "--client-ca-file": str(p / "ca.crt"),
            "--authorization-mode": "Node,RBAC",
            "--service-account-issuer": self.url,
            "--service-account-key-file": str(p / "sa.pub"),
            "--service-account-signing-key-file": str(p / "sa.key"),
            "--service-cluster-ip-range": "10.96.0.0/24",
            "--allow-privileged": "true",
            # The aggregation layer, for extension API servers (Kueue's visibility API): the
            # front proxy's client certificate and the headers it names the user in, and
            # APIService traffic sent to the Service's endpoint addresses, since nothing here
            # routes ClusterIPs (no kube-proxy)
            "--requestheader-client-ca-file": str(p / "front-proxy-ca.crt"),
            "--requestheader-allowed-names": FRONT_PROXY_CLIENT,
            "--requestheader-extra-headers-prefix": "X-Remote-Extra-",
            "--requestheader-group-headers": "X-Remote-Group",
            "--requestheader-username-headers": "X-Remote-User",
            "--proxy-client-cert-file": str(p / f"{FRONT_PROXY_CLIENT}.crt"),
            "--proxy-client-key-file": str(p / f"{FRONT_PROXY_CLIENT}.key"),
            "--enable-aggregator-routing": "true",
            "--profiling": "false",
            "--v": "1",
        }
        for arg in self.apiserver_args:
            key, _, value = arg.partition("=")
            flags[key] = value
        argv = [str(self.bin_dir / "kube-apiserver")]
        argv += [f"{k}={v}" if v != "" else k for k, v in flags.items()]
        self._spawn("kube-apiserver", argv)
        self._wait("kube-apiserver /readyz", lambda: self.get("/readyz") == "ok")

    def _start_scheduler(self) -> None:
        config = str(self.dir / "scheduler.kubeconfig")
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _start_controller_manager(self) -> None:
        config = str(self.dir / "controller-manager.kubeconfig")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                "--v=1",
            ],
        )

    # -- a tiny admin client (for the launcher's own waits and for fixtures) -----------------

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
                text = resp.read().decode()
                status = resp.status
        except urllib.error.HTTPError as exc:
            text, status = exc.read().decode(), exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get(self, path: str) -> Any:
        """The JSON (or text) body of a 200 answer, else None."""
        status, body = self.request("GET", path)
        return body if status == 200 else None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the admin (field manager ``mig-spawner-tests``)."""
        api = obj["apiVersion"]
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        meta = obj["metadata"]
        plural = _PLURALS[obj["kind"]]
        ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        path = f"{base}{ns}/{plural}/{meta['name']}?fieldManager=mig-spawner-tests&force=true"
        status, body = self.request("PATCH", path, obj, "application/apply-patch+yaml")
        if status not in (200, 201):
            raise RuntimeError(f"apply {obj['kind']} {meta['name']}: {status} {body}")
        return body

    def service_account_token(self, namespace: str, name: str, seconds: int = 86400) -> str:
        status, body = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        if status != 201:
            raise RuntimeError(f"TokenRequest for {namespace}/{name}: {status} {body}")
        return body["status"]["token"]


_PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Node": "nodes",
    "Pod": "pods",
}


def _post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def compact_etcd(plane: ControlPlane, revision: int | str) -> None:
    """Compact etcd's history up to ``revision`` (its JSON gateway), as the API server does
    every five minutes."""
    _post_json(plane.etcd_url + "/v3/kv/compaction", {"revision": str(revision), "physical": True})


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False
