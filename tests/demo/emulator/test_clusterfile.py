"""Cluster files: the shipped ones, GFD/device-plugin labels per strategy, layout checks and
clear errors."""

from __future__ import annotations

import pytest
from emu_helpers import THREE_NODES
from kubernetes_asyncio import client

from mig_spawner.core.catalog import default_catalog
from mig_spawner.demo.emulator import (
    ClusterSpecError,
    EmulatedCluster,
    load_cluster_file,
    load_cluster_spec,
    node_object,
    shipped_cluster_file,
)
from mig_spawner.demo.emulator.clusterfile import fit_layout, named_config

H100 = "NVIDIA-H100-80GB-HBM3"


def labels_and_allocatable(spec, name):
    node = node_object(next(n for n in spec.nodes if n.name == name), "127.1.0.1")
    return node["metadata"]["labels"], node["status"]["allocatable"]


def test_shipped_demo_cluster_file():
    """Two H100 80GB nodes with different MIG layouts and one A100 40GB, mixed strategy; every
    MIG resource the device plugin would advertise is labelled consistently."""
    spec = load_cluster_file(shipped_cluster_file("demo"))
    products = sorted(n.product for n in spec.nodes)
    assert products == ["NVIDIA-A100-SXM4-40GB", H100, H100]
    assert {n.strategy for n in spec.nodes} == {"mixed"}
    h100_layouts = [
        sorted(p.name for gpu in n.layouts for p in gpu or [])
        for n in spec.nodes
        if n.product == H100
    ]
    assert h100_layouts[0] != h100_layouts[1]
    for node in spec.nodes:
        labels, allocatable = labels_and_allocatable(spec, node.name)
        devices = [p for gpu in node.layouts for p in gpu or []]
        assert devices
        for resource, count in allocatable.items():
            if resource.startswith("nvidia.com/mig-"):
                assert labels[f"{resource}.count"] == count
                assert labels[f"{resource}.product"] == f"{node.product}-MIG-{resource[15:]}"
        assert sum(int(v) for k, v in allocatable.items() if k.startswith("nvidia.com/mig-")) == (
            len(devices)
        )


def test_three_node_labels():
    spec = load_cluster_spec(THREE_NODES)
    labels, allocatable = labels_and_allocatable(spec, "gpu-h100-a")
    # the values a real mixed-strategy H100 node shows (NVIDIA GPU Operator docs)
    assert labels["nvidia.com/gpu.product"] == H100
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["nvidia.com/gpu.count"] == "1"
    assert labels["nvidia.com/gpu.family"] == "hopper"
    assert labels["nvidia.com/mig.capable"] == "true"
    assert labels["nvidia.com/mig.strategy"] == "mixed"
    assert labels["nvidia.com/mig.config"] == "all-1g.10gb"
    assert labels["nvidia.com/mig.config.state"] == "success"
    assert labels["nvidia.com/mig-1g.10gb.count"] == "7"
    assert labels["nvidia.com/mig-1g.10gb.memory"] == "9984"
    assert labels["nvidia.com/mig-1g.10gb.multiprocessors"] == "16"
    assert labels["nvidia.com/mig-1g.10gb.slices.gi"] == "1"
    assert labels["nvidia.com/mig-1g.10gb.product"] == f"{H100}-MIG-1g.10gb"
    assert labels["kubernetes.io/hostname"] == "gpu-h100-a"
    assert allocatable["nvidia.com/mig-1g.10gb"] == "7" and "nvidia.com/gpu" not in allocatable
    labels, allocatable = labels_and_allocatable(spec, "gpu-h100-b")
    assert labels["nvidia.com/mig.config"] == "all-balanced"
    assert {k: v for k, v in allocatable.items() if k.startswith("nvidia.com/")} == {
        "nvidia.com/mig-1g.10gb": "2",
        "nvidia.com/mig-2g.20gb": "1",
        "nvidia.com/mig-3g.40gb": "1",
    }
    assert labels["nvidia.com/mig-3g.40gb.slices.gi"] == "3"
    labels, allocatable = labels_and_allocatable(spec, "gpu-a100-a")
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"
    assert labels["nvidia.com/gpu.family"] == "ampere"
    assert labels["nvidia.com/mig.config"] == "all-balanced"  # recognised from the explicit list
    assert labels["nvidia.com/mig-1g.5gb.memory"] == "4864"  # as on a real GCP A100 node
    assert {k: v for k, v in allocatable.items() if k.startswith("nvidia.com/")} == {
        "nvidia.com/mig-1g.5gb": "2",
        "nvidia.com/mig-2g.10gb": "1",
        "nvidia.com/mig-3g.20gb": "1",
    }


def test_single_strategy_cluster_file():
    spec = load_cluster_file(shipped_cluster_file("single"))
    labels, allocatable = labels_and_allocatable(spec, "gpu-h100-single")
    assert labels["nvidia.com/mig.strategy"] == "single"
    assert labels["nvidia.com/gpu.product"] == f"{H100}-MIG-1g.10gb"
    assert labels["nvidia.com/gpu.count"] == "14"
    assert labels["nvidia.com/gpu.memory"] == "9984"
    assert labels["nvidia.com/gpu.multiprocessors"] == "16"
    assert allocatable["nvidia.com/gpu"] == "14"
    assert not any(k.startswith("nvidia.com/mig-") for k in list(labels) + list(allocatable))
    labels, allocatable = labels_and_allocatable(spec, "gpu-h100-whole")
    assert labels["nvidia.com/gpu.product"] == H100
    assert labels["nvidia.com/mig.config"] == "all-disabled"
    assert labels["nvidia.com/gpu.count"] == "2"
    assert labels["nvidia.com/gpu.memory"] == str(default_catalog().model("h100-80gb").memory_mib)
    assert allocatable["nvidia.com/gpu"] == "2"


def test_strategies_none_invalid_single_and_whole_gpus_under_mixed():
    spec = load_cluster_spec(
        {
            "nodes": [
                {
                    "name": "none",
                    "gpu": "h100-80gb",
                    "gpus": 2,
                    "strategy": "none",
                    "mig": "all-1g.10gb",
                },
                {
                    "name": "bad-single",
                    "gpu": "h100-80gb",
                    "strategy": "single",
                    "mig": "all-balanced",
                },
                {
                    "name": "half",
                    "gpu": "h100-80gb",
                    "gpus": 2,
                    "mig": [["3g.40gb", "4g.40gb"], []],
                },
                {"name": "cpu", "cpu": "8", "memory": "32Gi"},
            ]
        }
    )
    labels, allocatable = labels_and_allocatable(spec, "none")
    assert allocatable["nvidia.com/gpu"] == "2" and labels["nvidia.com/mig.strategy"] == "none"
    labels, allocatable = labels_and_allocatable(spec, "bad-single")
    assert labels["nvidia.com/gpu.product"] == f"{H100}-MIG-INVALID"
    assert labels["nvidia.com/gpu.count"] == "0" and allocatable["nvidia.com/gpu"] == "0"
    labels, allocatable = labels_and_allocatable(spec, "half")
    assert allocatable["nvidia.com/gpu"] == "1"
    assert (
        allocatable["nvidia.com/mig-3g.40gb"] == "1"
        and allocatable["nvidia.com/mig-4g.40gb"] == "1"
    )
    assert labels["nvidia.com/mig.config"] == "custom"
    labels, allocatable = labels_and_allocatable(spec, "cpu")
    assert not any(k.startswith("nvidia.com/") for k in labels)
    assert allocatable["cpu"] == "8" and allocatable["memory"] == "32Gi"


def test_named_configs_and_layout_fitting():
    h100 = default_catalog().model("h100-80gb")
    a100 = default_catalog().model("a100-40gb")
    names = lambda layout: sorted(p.name for p in layout)  # noqa: E731
    assert names(named_config(a100, "all-balanced")) == ["1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"]
    assert names(named_config(a100, "all-1g.10gb")) == ["1g.10gb"] * 4  # two memory slices each
    assert names(named_config(h100, "all-1g.10gb")) == ["1g.10gb"] * 7
    assert names(named_config(h100, "all-1g.10gb.me")) == ["1g.10gb+me"]
    assert named_config(h100, "all-disabled") is None
    p = h100.profile
    assert fit_layout(h100, [p("4g.40gb"), p("3g.40gb")])
    assert fit_layout(h100, [p("1g.20gb")] * 4)
    assert not fit_layout(h100, [p("1g.20gb")] * 5)
    assert not fit_layout(h100, [p("4g.40gb"), p("4g.40gb")])
    # 3g.40gb sits at memory slices 0-3 or 4-7: two of them leave no room for anything
    assert not fit_layout(h100, [p("3g.40gb"), p("3g.40gb"), p("1g.10gb")])
    assert fit_layout(h100, [p("2g.20gb"), p("2g.20gb"), p("3g.40gb")])


def test_count_makes_numbered_copies():
    spec = load_cluster_spec({"nodes": [{"name": "gpu", "count": 3, "gpu": "h100-80gb"}]})
    assert [n.name for n in spec.nodes] == ["gpu-1", "gpu-2", "gpu-3"]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"gpu": "h100-80gb"}, "nodes[0]: missing required field 'name'"),
        (
            {"name": "x", "gpu": "h100-80gb", "mig": [["5g.50gb"]]},
            "node 'x'.mig[0][0]: unknown MIG profile '5g.50gb' for NVIDIA-H100-80GB-HBM3",
        ),
        (
            {"name": "x", "gpu": "h100-80gb", "mig": [["3g.40gb", "3g.40gb", "1g.10gb"]]},
            "node 'x': GPU 0 layout [3g.40gb, 3g.40gb, 1g.10gb] does not fit",
        ),
        ({"name": "x", "gpu": "h100-80gb", "mig": [["1g.10gb"] * 8]}, "does not fit"),
        ({"name": "x", "gpu": "h100-80gb", "mig": "all-5g.50gb"}, "unknown MIG profile '5g.50gb'"),
        ({"name": "x", "gpu": "h100-80gb", "mig": "some-config"}, "unknown mig-parted config"),
        ({"name": "x", "gpu": "V100"}, "node 'x'.gpu: unknown GPU 'V100'"),
        (
            {"name": "x", "gpu": "h100-80gb", "gpus": 2, "mig": [["1g.10gb"]] * 3},
            "node 'x'.mig: 3 GPU layouts for gpus: 2",
        ),
        (
            {"name": "x", "gpu": "h100-80gb", "strategy": "mixd"},
            "node 'x'.strategy: must be one of",
        ),
        ({"name": "x", "stratgy": "mixed"}, "node 'x': unknown field(s) stratgy"),
        ({"name": "x", "taints": [{"key": "k", "effect": "Nope"}]}, "node 'x'.taints[0].effect"),
        ({"name": "x", "labels": {"a": ["b"]}}, "node 'x'.labels.a: expected a string"),
        ({"name": "x", "mig": "all-1g.10gb"}, "node 'x': 'mig' and 'gpus' need a 'gpu' model"),
    ],
)
def test_malformed_nodes_are_clear_errors(node, message):
    with pytest.raises(ClusterSpecError) as error:
        load_cluster_spec({"nodes": [node]})
    assert message in str(error.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(ClusterSpecError, match="duplicate node name"):
        load_cluster_spec({"nodes": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ClusterSpecError, match="unknown top-level field"):
        load_cluster_spec({"node": []})
    broken = tmp_path / "broken.yaml"
    broken.write_text("nodes: [\n")
    with pytest.raises(ClusterSpecError, match=r"broken\.yaml:2:1: not valid YAML"):
        load_cluster_file(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - name: n1\n    gpu: h100-80gb\n    mig: [[7g.80gb, 1g.10gb]]\n")
    # the line and column of the GPU's layout, and the line itself with a caret under it
    with pytest.raises(ClusterSpecError, match=r"bad\.yaml:4:11: node 'n1': GPU 0 layout"):
        load_cluster_file(bad)
    with pytest.raises(ClusterSpecError, match="cannot read cluster file"):
        load_cluster_file(tmp_path / "missing.yaml")


async def test_file_errors_name_line_column_and_what_was_expected(tmp_path):
    """Issue 19: a garbled cluster file's error is located (file:line:column) and shows the
    line, for YAML syntax and for values the file format refuses."""
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("nodes:\n  - name: a\n    gpu: h100-80gb\n     mig: all-balanced\n")
    with pytest.raises(ClusterSpecError) as error:
        load_cluster_file(garbled)
    e = error.value
    assert e.source == f"{garbled}:4:9"
    assert str(e).splitlines() == [
        f"{garbled}:4:9: not valid YAML: mapping values are not allowed here",
        "    4 |      mig: all-balanced",
        "      |         ^",
    ]
    cases = [
        ("    gpu: H999\n", ("nodes", 1, "gpu"), "6:10", "a GFD product label or a catalog key"),
        (
            "    gpu: h100-80gb\n    mig: [[1g.10gb, 9g.99gb]]\n",
            ("nodes", 1, "mig", 0, 1),
            "7:21",
            None,
        ),
        ("    strategy: mixd\n", ("nodes", 1, "strategy"), "6:15", None),
        ("    colour: red\n", ("nodes", 1, "colour"), "6:13", None),
    ]
    for tail, path, where, expected in cases:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "nodes:\n  - name: ok\n    gpu: h100-80gb\n    mig: all-balanced\n  - name: b\n" + tail
        )
        with pytest.raises(ClusterSpecError) as error:
            load_cluster_file(bad)
        e = error.value
        assert e.path == path, tail
        assert e.source == f"{bad}:{where}", tail
        assert str(e).startswith(f"{bad}:{where}: node 'b'"), str(e)
        assert str(e).splitlines()[-1].endswith("^")
        if expected:
            assert e.expected == expected


async def test_nodes_served_to_kubernetes_asyncio(tmp_path):
    async with EmulatedCluster(shipped_cluster_file("single"), log_dir=tmp_path) as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        from kubernetes_asyncio import config

        api_client = await config.new_client_from_config(config_file=str(kubeconfig))
        async with api_client:
            nodes = (await client.CoreV1Api(api_client).list_node()).items
    by_name = {n.metadata.name: n for n in nodes}
    node = by_name["gpu-h100-single"]
    assert node.status.capacity["nvidia.com/gpu"] == "14"
    assert node.metadata.labels["nvidia.com/gpu.product"] == f"{H100}-MIG-1g.10gb"
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert node.status.addresses[0].type == "InternalIP"
    assert node.status.addresses[0].address.startswith("127.")
