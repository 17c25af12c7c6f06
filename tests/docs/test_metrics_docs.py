"""The metrics reference and the Grafana dashboard name exactly what the hub exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mig_spawner.core.cluster import ADDED
from mig_spawner.core.policy import build_policy
from mig_spawner.hub import metrics
from mig_spawner.hub.watch import ClusterView

DOCS = Path(__file__).resolve().parents[2] / "docs"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


class _NoAPI:
    """The view is never started here: its feeds need only these two attributes."""

    list_node = list_pod_for_all_namespaces = None


def _view():
    view = ClusterView(_NoAPI())
    node = {
        "metadata": {"name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "status": {
            "allocatable": {"nvidia.com/mig-1g.10gb": "2"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    view.state.apply_node_event(ADDED, node)
    return view


def exported() -> dict[str, str]:
    """Family name -> type, of everything mig-spawner adds to /hub/metrics."""
    policy = build_policy(
        tiers={"t": {"display_name": "t"}}, team_quotas={"v": {"compute_slices": 2}}
    )
    view = _view()
    families = {f.name: f.type for f in metrics.ClusterCollector(lambda: (view, policy)).collect()}
    series = metrics.HubMetrics(lambda: None)
    for metric in series._collectors():
        if metric is series.collector:
            continue
        (family,) = metric.collect()
        families[family.name] = family.type
    return families


def _family(name: str, known) -> str:
    if name in known:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return name


def test_every_metric_is_documented_and_nothing_else():
    families = exported()
    assert all(name.startswith("mig_spawner_") for name in families)
    table = re.findall(
        r"^\| `(mig_spawner_\w+)` \| (\w+) \|", (DOCS / "metrics.md").read_text(), re.M
    )
    documented = {_family(name, families): kind for name, kind in table}
    assert documented == families


def test_the_dashboard_uses_every_metric_and_only_real_ones():
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {_family(n, exported()) for e in exprs for n in re.findall(r"mig_spawner_\w+", e)}
    assert used == set(exported())
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])


def test_without_a_view_only_health_zero_is_exported():
    (family,) = metrics.ClusterCollector(lambda: None).collect()
    assert family.name == "mig_spawner_cluster_view_healthy"
    assert [s.value for s in family.samples] == [0]


def test_collector_figures_come_from_the_state():
    view = _view()
    policy = build_policy(tiers={"t": {"display_name": "t"}}, team_quotas={"v": {"servers": 3}})
    families = {f.name: f for f in metrics.ClusterCollector(lambda: (view, policy)).collect()}
    free = families["mig_spawner_slices_free"].samples
    assert [(s.labels["node"], s.labels["profile"], s.value) for s in free] == [
        ("n1", "1g.10gb", 2)
    ]
    limits = {
        (s.labels["team"], s.labels["unit"]): s.value
        for s in families["mig_spawner_team_quota_limit"].samples
    }
    assert limits == {("v", "servers"): 3}
    assert families["mig_spawner_cluster_view_healthy"].samples[0].value == 0  # never synced


def test_decision_line_quotes_values_with_spaces():
    from mig_spawner.core.admission import SpawnRequest, decide

    policy = build_policy(tiers={"t": {"display_name": "t", "compute_slices": 3}})
    decision = decide(SpawnRequest("Ada Lovelace", "t"), policy, _view().state)
    line = metrics.decision_line(decision, user="Ada Lovelace", server="", seconds=0.0012)
    assert line.startswith('decision user="Ada Lovelace" server=- team=- tier=t requested=- ')
    assert 'outcome=refused code=no-matching-gpu ms=1.20 reason="No GPU in this cluster' in line
