"""The committed snapshot fixtures are what snapshots/generate.py writes, and look real."""

from __future__ import annotations

import importlib.util

import pytest
from cli_helpers import SNAPSHOTS, items_of, snapshot

from mig_spawner.core.catalog import default_catalog
from mig_spawner.core.nodes import parse_node
from mig_spawner.core.pods import parse_pod

CATALOG = default_catalog()


def _generator():
    spec = importlib.util.spec_from_file_location(
        "cli_snapshot_generate", SNAPSHOTS / "generate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("filename", ["mixed-h100.json", "single-h100.json", "multi-model.json"])
def test_committed_snapshot_matches_its_generator(filename):
    gen = _generator()
    assert (SNAPSHOTS / filename).read_text() == gen.render(gen.SNAPSHOTS[filename]), (
        f"run `python tests/cli/snapshots/generate.py` to refresh {filename}"
    )


@pytest.mark.parametrize("name", ["mixed-h100", "single-h100", "multi-model"])
def test_snapshots_are_kubectl_lists_of_clean_nodes_and_pods(name):
    data = snapshot(name)
    assert (data["apiVersion"], data["kind"]) == ("v1", "List")
    kinds = [i["kind"] for i in data["items"]]
    assert kinds == sorted(kinds)  # kubectl prints the nodes, then the pods
    for obj in items_of(data, "Node"):
        info = parse_node(obj, CATALOG)
        assert info.problems == () and info.usable and info.offers
        labels = obj["metadata"]["labels"]
        assert labels["nvidia.com/mig.strategy"] in ("mixed", "single")
        assert labels["nvidia.com/gpu.present"] == "true"
    for obj in items_of(data, "Pod"):
        pod = parse_pod(obj, None, CATALOG)
        assert obj["metadata"]["uid"] and obj["status"]["phase"]
        if pod.managed:  # hub-spawned: labelled by KubeSpawner and mig-spawner
            assert obj["metadata"]["labels"]["component"] == "singleuser-server"
            assert pod.charge is not None and pod.team in ("vision", "nlp")
