"""``mig-spawner demo``: the real thing on an emulated MIG cluster, in one command.

Starts the emulated Kubernetes API (scheduler + a kubelet that runs each pod as a real
``jupyterhub-singleuser`` process on its own 127.0.0.N), then JupyterHub with MIGSpawner
and a demo login whose users sit in two teams with quotas. Ctrl-C stops everything: the
hub, the proxy and every notebook process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
from pathlib import Path

import aiohttp

from . import hubprocess
from .emulator import EmulatedCluster, load_cluster_file
from .ports import free_port

PASSWORD = "mig-demo"
TEAMS = {"vision": ["alice", "bob"], "nlp": ["carol", "dave", "alice"]}
LONER = "erin"  # in no team: the default quota applies
DEFAULT_CLUSTER = Path(__file__).parent / "clusters" / "demo.yaml"
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "description": "A 1g slice for interactive work, plotting and small models.",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "max_fallback_steps": 2,
        "default": True,
        "max_wait": 600,  # when every slice it could use is taken: wait in line, 10 min
        # for someone in line: stop a server idle 3 min, after a 1 min warning (demo pace;
        # `mig-spawner demo --reclaim IDLE,GRACE` changes both)
        "reclaim": {"idle_after": 180, "grace": 60},
    },
    "training": {
        "display_name": "3g training",
        "description": "Three compute slices and >= 40 GB for fine-tuning.",
        "compute_slices": 3,
        "min_memory_gb": 40,
        "max_compute_slices": 7,
        "max_fallback_steps": 1,
    },
    "full": {
        "display_name": "7g full GPU",
        "description": "A whole GPU for large jobs.",
        "compute_slices": 7,
        "min_memory_gb": 40,
        "fallback": False,
        "groups": ["vision", "nlp"],
    },
}
QUOTAS = {
    "vision": {"compute_slices": 4, "servers": 4},
    "nlp": {"compute_slices": 8},
}
DEFAULT_QUOTA = {"compute_slices": 1, "servers": 1}
ADMIN = "alice"
#: The admin's own profiles beside the tiers: a CPU-only server, and the training tier
#: with an image choice (and a free-text image). 1g notebook and 7g full GPU are listed
#: after them as tiers of their own.
PROFILES = [
    {
        "display_name": "CPU only",
        "slug": "cpu",
        "description": "2 CPUs and 4 GB, no GPU: data preparation, plotting, writing.",
        "kubespawner_override": {"cpu_limit": 2.0, "mem_limit": "4G"},
    },
    {
        "display_name": "3g training",
        "slug": "training",
        "mig_tier": "training",
        "description": "Three compute slices and >= 40 GB for fine-tuning.",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "pytorch": {
                        "display_name": "PyTorch",
                        "default": True,
                        "kubespawner_override": {
                            "image": "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09"
                        },
                    },
                    "tensorflow": {
                        "display_name": "TensorFlow",
                        "kubespawner_override": {
                            "image": "quay.io/jupyter/tensorflow-notebook:cuda-2024-12-09"
                        },
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image (quay.io/...:tag)",
                    "validation_regex": r"^quay\.io/[a-z0-9/_.-]+:[A-Za-z0-9_.-]+$",
                    "validation_message": "an image on quay.io, with a tag",
                    "kubespawner_override": {"image": "{value}"},
                },
            }
        },
    },
]


def local_hub_lines(*, port: int, workdir: Path, proxy_api: str = "") -> str:
    """The start of a jupyterhub_config.py for a MIGSpawner hub on 127.0.0.1: its ports,
    database, cookie secret and pid file in ``workdir``, no servers left behind on exit.
    The demo and the spawn-storm benchmark both start from these lines."""
    proxy_api = proxy_api or f"http://127.0.0.1:{free_port()}"
    return textwrap.dedent(
        f"""\
        c = get_config()  # noqa
        c.JupyterHub.spawner_class = "mig"
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {free_port()}
        c.ConfigurableHTTPProxy.api_url = {proxy_api!r}
        c.ConfigurableHTTPProxy.pid_file = "{workdir / "proxy.pid"}"
        c.JupyterHub.db_url = "sqlite:///{workdir / "jupyterhub.sqlite"}"
        c.JupyterHub.cookie_secret_file = "{workdir / "cookie_secret"}"
        c.JupyterHub.pid_file = "{workdir / "jupyterhub.pid"}"
        c.JupyterHub.cleanup_servers = True
        """
    )


def hub_config(
    *,
    cluster_url: str,
    port: int,
    workdir: Path,
    proxy_api: str = "",
    ca: Path | None = None,
    reclaim: tuple[float, float] | None = None,
) -> str:
    """The jupyterhub_config.py the demo hub runs with (``reclaim``: the notebook tier's
    ``(idle_after, grace)``, else TIERS's)."""
    users = sorted({u for members in TEAMS.values() for u in members} | {LONER})
    tiers = {slug: dict(tier) for slug, tier in TIERS.items()}
    if reclaim is not None:
        tiers["notebook"]["reclaim"] = {"idle_after": reclaim[0], "grace": reclaim[1]}
    return (
        "# Generated by `mig-spawner demo`.\n"
        + local_hub_lines(port=port, workdir=workdir, proxy_api=proxy_api)
        + textwrap.dedent(
            f"""\
        c.JupyterHub.allow_named_servers = True
        from mig_spawner.demo.hubextras import DemoAuthenticator, quiet_no_confirm_warning
        quiet_no_confirm_warning()
        c.JupyterHub.authenticator_class = DemoAuthenticator
        c.DemoAuthenticator.password = {PASSWORD!r}
        c.Authenticator.allowed_users = set({users!r})
        c.Authenticator.admin_users = {{{ADMIN!r}}}
        c.JupyterHub.load_groups = {{team: {{"users": m}} for team, m in {TEAMS!r}.items()}}

        c.KubeSpawner.k8s_api_host = {cluster_url!r}
        c.KubeSpawner.k8s_api_ssl_ca_cert = {str(ca) if ca else ""!r}
        c.KubeSpawner.namespace = "demo"
        c.KubeSpawner.storage_pvc_ensure = False
        c.KubeSpawner.image = "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09"
        c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
        c.KubeSpawner.default_url = "/lab"
        c.KubeSpawner.start_timeout = 120
        c.KubeSpawner.http_timeout = 120
        c.KubeSpawner.profile_list = {PROFILES!r}
        # The hub hears of activity every 30 s (default 5 min), so reclaim's 3 min is fair.
        c.JupyterHub.last_activity_interval = 30
        c.ConfigurableHTTPProxy.log_level = "warn"  # not a line per route read (every 30 s)
        c.KubeSpawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "30"}}

        c.MIGSpawner.tiers = {tiers!r}
        c.MIGSpawner.team_quotas = {QUOTAS!r}
        c.MIGSpawner.default_quota = {DEFAULT_QUOTA!r}

        # mig-spawner's service (after the settings it reads): the admins' GPU slice page
        # at /services/mig/ ({ADMIN} is an admin) and the open spawn forms' live figures.
        from mig_spawner.hub.service import roles, service
        c.JupyterHub.services = [service(c, url="http://127.0.0.1:{free_port()}")]
        c.JupyterHub.load_roles = roles()
        # The home page tells a server on a fallback slice when its own size is free.
        from mig_spawner.hub.homepage import install_home_page
        install_home_page(c)
        """
        )
    )


def _node_bin() -> str | None:
    here = Path(__file__).resolve().parents[2] / ".node" / "node_modules" / ".bin"
    return str(here) if here.is_dir() else None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether the hub could not listen on ``port``: bind as the hub's proxy (and tornado)
    binds, with SO_REUSEADDR, so the TIME-WAIT sockets a demo stopped a moment ago leaves
    behind do not count; a live listener still does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as e:
            return e.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


async def _wait_hub_route(
    api_url: str, token: str, proc: asyncio.subprocess.Process, timeout: float
) -> None:
    """Wait until the hub has added its route to the proxy, asking the proxy's own API.

    Asking the public URL instead makes the proxy log a red 404 (and a stack dump) for
    every try before the hub is up.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession() as http:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"JupyterHub exited with code {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError, json.JSONDecodeError):
                async with http.get(f"{api_url}/api/routes", headers=headers) as r:
                    if r.status == 200 and "/" in json.loads(await r.text()):
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"JupyterHub did not start in {timeout:.0f}s")
            await asyncio.sleep(0.25)


def banner(
    url: str,
    cluster_file: Path,
    pod_logs: Path,
    kubeconfig: Path | None = None,
    control_plane: str = "emulated control plane",
    api_url: str = "",
    config: Path | None = None,
) -> str:
    width = max(len(", ".join(m)) for m in [*TEAMS.values(), [LONER]]) + 2
    lines = [
        "",
        "mig-spawner demo is running",
        f"  open:      {url}",
        f"  password:  {PASSWORD}  (for every user)",
        f"  admin:     {ADMIN}  (admin page: {url.removesuffix('/login')}/admin)",
        f"  GPU slices: {url.removesuffix('hub/login')}services/mig/  (the admins' slice page)",
    ]
    for team, members in TEAMS.items():
        limits = ", ".join(f"{k} {v}" for k, v in QUOTAS[team].items())
        lines.append(f"  team {team:<7} {', '.join(members):<{width}} quota: {limits}")
    lines.append(f"  no team      {LONER:<{width}} default quota: 1 compute slice, 1 server")
    lines.append(f"  cluster:   {cluster_file} ({control_plane})")
    if kubeconfig is not None:
        lines.append(f"  kubeconfig: {kubeconfig}")
        lines.append(f"             KUBECONFIG={kubeconfig} kubectl get nodes,pods -A")
    if api_url:
        lines.append(f"  kube API:  {api_url}")
    if config is not None:
        lines.append(f"  hub config: {config}")
    if config is not None and kubeconfig is not None:
        lines.append(
            f"             mig-spawner explain --kubeconfig {kubeconfig} --config {config}"
            " --user bob --tier training"
        )
    lines.append(f"  pod logs:  {pod_logs}")
    lines.append("Press Ctrl-C to stop (stops the hub and every notebook).")
    return "\n".join(lines)


class _Emulated:
    """The embedded default: the emulated API server, scheduler and kubelet."""

    name = "emulated control plane"

    def __init__(self, spec, workdir: Path) -> None:
        self.cluster = EmulatedCluster(spec, kubelet="process", log_dir=workdir / "pods")
        self.kubeconfig = workdir / "kubeconfig"
        self.ca: Path | None = None

    async def start(self) -> str:
        await self.cluster.start()
        self.cluster.write_kubeconfig(self.kubeconfig)
        return self.cluster.url

    async def stop(self) -> None:
        await self.cluster.stop()


class _Real:
    """kube-apiserver, kube-scheduler, kube-controller-manager and etcd (``make k8s``), with
    the cluster file's GPU nodes registered and run by the node agent in this process."""

    def __init__(self, spec, workdir: Path) -> None:
        from .controlplane import K8S_VERSION, ControlPlane

        self.name = f"real Kubernetes {K8S_VERSION}"
        self.spec, self.workdir = spec, workdir
        self.plane = ControlPlane(workdir=workdir / "k8s")
        self.kubeconfig = self.plane.kubeconfig
        self.ca: Path | None = self.plane.ca
        self.api = self.agent = None

    async def start(self) -> str:
        from .controlplane.agent import NodeAgent
        from .controlplane.mirror import ApiClient

        await asyncio.to_thread(self.plane.start)
        self.plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        self.api = await ApiClient(self.kubeconfig).__aenter__()
        self.agent = NodeAgent(
            self.api, self.spec, kubelet="process", log_dir=str(self.workdir / "pods")
        )
        await self.agent.start()
        names = {n.name for n in self.spec.nodes}

        def ready() -> bool:
            nodes = (self.plane.get("/api/v1/nodes") or {}).get("items") or []
            untainted = {
                n["metadata"]["name"]
                for n in nodes
                if not any(
                    t["key"] == "node.kubernetes.io/not-ready"
                    for t in n["spec"].get("taints") or []
                )
            }
            sa = self.plane.get("/api/v1/namespaces/demo/serviceaccounts/default")
            return names <= untainted and sa is not None

        await asyncio.to_thread(self.plane._wait, "the demo's nodes to be Ready", ready)
        return self.plane.url

    async def stop(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
        if self.api is not None:
            await self.api.__aexit__(None, None, None)
        await asyncio.to_thread(self.plane.stop)


async def run(
    port: int = 8000,
    cluster_file: str | os.PathLike | None = None,
    real_control_plane: bool = False,
    reclaim: tuple[float, float] | None = None,
) -> int:
    cluster_path = Path(cluster_file) if cluster_file else DEFAULT_CLUSTER
    spec = load_cluster_file(cluster_path)
    if real_control_plane:
        from .controlplane import NotBuilt, require_binaries

        try:
            require_binaries()
        except NotBuilt as exc:
            print(f"mig-spawner: error: {exc}", file=sys.stderr)
            return 2
    if not shutil.which("configurable-http-proxy", path=_path_with_node()):
        print(
            "mig-spawner: error: configurable-http-proxy (npm) is not on PATH; "
            "`make demo` installs it, or: npm install -g configurable-http-proxy",
            file=sys.stderr,
        )
        return 2
    if port_in_use(port):
        print(
            f"mig-spawner: error: port {port} is in use (another hub or demo?); "
            f"pick a free one with --port, e.g. --port {free_port()}",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mig-spawner-demo-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    cluster = (_Real if real_control_plane else _Emulated)(spec, workdir)
    proc = None
    try:
        cluster_url = await cluster.start()
        kubeconfig = cluster.kubeconfig
        config = workdir / "jupyterhub_config.py"
        proxy_api, token = f"http://127.0.0.1:{free_port()}", secrets.token_hex(16)
        config.write_text(
            hub_config(
                cluster_url=cluster_url,
                port=port,
                workdir=workdir,
                proxy_api=proxy_api,
                ca=cluster.ca,
                reclaim=reclaim,
            )
        )
        env = dict(
            os.environ,
            KUBECONFIG=str(kubeconfig),
            PATH=_path_with_node(),
            CONFIGPROXY_AUTH_TOKEN=token,
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jupyterhub",
            "-f",
            str(config),
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/hub/login"
        await _wait_hub_route(proxy_api, token, proc, timeout=60)
        print(
            banner(
                url,
                cluster_path,
                workdir / "pods",
                kubeconfig,
                cluster.name,
                cluster_url,
                config=config,
            ),
            flush=True,
        )
        hub_exit = asyncio.ensure_future(proc.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({hub_exit, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        return 0 if stop.is_set() else (proc.returncode or 1)
    except (RuntimeError, TimeoutError) as e:
        print(f"mig-spawner: error: {e}", file=sys.stderr)
        return 1
    finally:
        if proc is not None and proc.returncode is None:
            await hubprocess.terminate(proc)
        if proc is not None:  # a hub that died before its cleanup left its proxy running
            left = await hubprocess.stop_leftover(workdir / "proxy.pid")
            if left is not None:
                print(f"mig-spawner: stopped the hub's leftover proxy (pid {left})", flush=True)
        await cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("mig-spawner demo stopped.", flush=True)


def _path_with_node() -> str:
    parts = [os.path.dirname(sys.executable)]
    if _node_bin():
        parts.append(_node_bin())
    return os.pathsep.join([*parts, os.environ.get("PATH", "")])


def main(args) -> int:
    """Entry for ``mig-spawner demo`` (args: argparse namespace with port, cluster,
    real_control_plane and reclaim)."""
    return asyncio.run(
        run(
            port=args.port,
            cluster_file=args.cluster,
            real_control_plane=getattr(args, "real_control_plane", False),
            reclaim=getattr(args, "reclaim", None),
        )
    )
