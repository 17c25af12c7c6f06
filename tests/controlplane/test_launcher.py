"""The launcher leaves nothing behind, and the node agent's nodes look like GPU nodes.

The first test starts its own control plane in a child process and interrupts it as a
person does (Ctrl-C): every process it started is gone and its directory removed. The
others use the session's control plane (tests/realk8s.py) and a node agent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from realk8s import require_real_control_plane

H100 = "NVIDIA-H100-80GB-HBM3"
SCRIPT = """
import sys, time
from mig_spawner.demo.controlplane import ControlPlane
plane = ControlPlane().start()
print(plane.dir, plane.url, flush=True)
time.sleep(600)
"""


def test_ctrl_c_stops_every_process_and_removes_the_directory():
    require_real_control_plane()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: an ignored SIGINT (a hub test may leave it so) is inherited,
        # and Python then installs no KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        workdir = Path(line.split()[0])
        assert workdir.is_dir()
        children = psutil.Process(proc.pid).children(recursive=True)
        names = sorted(Path(c.exe()).name for c in children)
        assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [c.cmdline()[:2] for c in alive]
    assert not workdir.exists()


def test_agent_nodes_are_labelled_ready_and_leased(real_cluster):
    cluster = real_cluster(
        {
            "nodes": [
                {"name": "mixed-1", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]},
                {"name": "single-1", "gpu": H100, "strategy": "single", "mig": [["3g.40gb"] * 2]},
                {"name": "whole-1", "gpu": H100, "gpus": 2, "strategy": "none"},
            ]
        }
    )
    nodes = {n["metadata"]["name"]: n for n in cluster.nodes}
    mixed, single, whole = nodes["mixed-1"], nodes["single-1"], nodes["whole-1"]
    for node in (mixed, single, whole):
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"].startswith(H100)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        assert not taints & {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
        lease = cluster.plane.get(
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node['metadata']['name']}"
        )
        assert lease["spec"]["holderIdentity"] == node["metadata"]["name"]
    assert mixed["metadata"]["labels"]["nvidia.com/mig.strategy"] == "mixed"
    assert mixed["status"]["allocatable"]["nvidia.com/mig-1g.10gb"] == "7"
    assert single["metadata"]["labels"]["nvidia.com/mig.strategy"] == "single"
    assert single["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert single["metadata"]["labels"]["nvidia.com/gpu.product"] == f"{H100}-MIG-3g.40gb"
    assert whole["status"]["allocatable"]["nvidia.com/gpu"] == "2"


def test_the_processes_die_with_a_killed_launcher():
    """SIGKILL gives the launcher no chance to stop anything: the processes die with it."""
    require_real_control_plane()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        workdir = Path(proc.stdout.readline().split()[0])
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 4
    finally:
        proc.kill()
        proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [c.cmdline()[:1] for c in alive]
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)  # the one thing a SIGKILL leaves
