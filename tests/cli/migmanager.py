"""A stand-in for NVIDIA's mig-manager on the real control plane (a thread in the test).

Like the GPU Operator's mig-manager, it watches each node's ``nvidia.com/mig.config``
label; when it changes it sets ``nvidia.com/mig.config.state=pending``, applies the named
config of a mig-parted ``config.yaml`` (the GPUs' new MIG devices become the node's
``nvidia.com/mig-*`` capacity and allocatable and GFD's count labels, as the device plugin
and GFD would report them), then sets the state to ``success``. A config listed in
``fail`` ends in ``failed`` with the node left as it was, as mig-manager does when
nvidia-mig-parted cannot apply a config.
"""

from __future__ import annotations

import threading
import time

import yaml

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.layouts import Layout
from mig_spawner.core.replay import relayout_node

CONFIG = "nvidia.com/mig.config"
STATE = "nvidia.com/mig.config.state"
PREFIX = "nvidia.com/mig-"


class MigManager:
    def __init__(self, plane, nodes: list[str], config_yaml: str, *, fail=(), delay=0.3):
        self.plane, self.nodes, self.delay = plane, nodes, delay
        self.configs = yaml.safe_load(config_yaml)["mig-configs"]
        self.fail = set(fail)
        self.applied: dict[str, str | None] = {}
        self.states: list[tuple[str, str]] = []  # (node, state) in the order set
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        for name in self.nodes:
            self.applied[name] = self._node(name)["metadata"]["labels"].get(CONFIG)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _node(self, name):
        status, body = self.plane.request("GET", f"/api/v1/nodes/{name}")
        assert status == 200, body
        return body

    def _patch(self, path, body):
        status, answer = self.plane.request("PATCH", path, body, "application/merge-patch+json")
        assert status == 200, answer

    def _state(self, name, state):
        self._patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": {STATE: state}}})
        self.states.append((name, state))

    def _layouts(self, node, config) -> list[Layout]:
        labels = node["metadata"]["labels"]
        model = default_catalog().model_for_product(labels["nvidia.com/gpu.product"])
        gpus = int(labels["nvidia.com/gpu.count"])
        per_gpu: list[Layout] = [Layout(model.key, ())] * gpus
        for entry in self.configs[config]:
            devices = range(gpus) if entry["devices"] == "all" else entry["devices"]
            for i in devices:
                per_gpu[i] = Layout.of(model, entry.get("mig-devices") or {})
        return per_gpu

    def _apply(self, name, config):
        self._state(name, "pending")
        time.sleep(self.delay)
        if config in self.fail or config not in self.configs:
            self._state(name, "failed")
            return
        node = self._node(name)
        new = relayout_node(node, self._layouts(node, config), config)
        labels = {k: None for k in node["metadata"]["labels"] if k.startswith(PREFIX)}
        labels.update({k: v for k, v in new["metadata"]["labels"].items() if k.startswith(PREFIX)})
        self._patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": labels}})
        status = {}
        for part in ("capacity", "allocatable"):
            old = {k: None for k in node["status"][part] if k.startswith(PREFIX)}
            status[part] = {**old, **new["status"][part]}
        self._patch(f"/api/v1/nodes/{name}/status", {"status": status})
        self._state(name, "success")

    def _run(self):
        while not self._stop.is_set():
            for name in self.nodes:
                config = self._node(name)["metadata"]["labels"].get(CONFIG)
                if config != self.applied[name]:
                    self.applied[name] = config
                    self._apply(name, config)
            time.sleep(0.1)
