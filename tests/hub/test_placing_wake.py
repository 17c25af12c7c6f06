"""A starting spawn is woken by the watch events that concern it, not by a poll."""

from __future__ import annotations

import asyncio

from mig_spawner.core.cluster import ADDED, MODIFIED
from mig_spawner.core.pods import HUB_ANNOTATION, NODE_ANNOTATION, USER_ANNOTATION
from mig_spawner.hub.watch import ClusterView


class _NoAPI:
    list_node = list_pod_for_all_namespaces = None


def node(name: str, cordoned: bool = False) -> dict:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "spec": {"unschedulable": cordoned},
        "status": {
            "allocatable": {"nvidia.com/mig-1g.10gb": "2"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, pinned: str) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": "jhub",
            "uid": name,
            "annotations": {NODE_ANNOTATION: pinned, HUB_ANNOTATION: "hub", USER_ANNOTATION: name},
        },
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "resources": {
                        "requests": {"nvidia.com/mig-1g.10gb": "1"},
                        "limits": {"nvidia.com/mig-1g.10gb": "1"},
                    },
                }
            ]
        },
        "status": {"phase": "Pending"},
    }


def view_with(*objs) -> ClusterView:
    view = ClusterView(_NoAPI())
    for kind, obj in objs:
        apply = view.apply_node_event if kind == "nodes" else view.state.apply_pod_event
        apply(ADDED, obj)
    return view


def event(view, kind, obj) -> None:
    """What the feed does with one watch event."""
    apply = view.apply_node_event if kind == "nodes" else view.state.apply_pod_event
    apply(MODIFIED, obj)
    view.touched(kind, obj)


async def test_events_on_its_pod_or_its_node_wake_it_and_others_do_not():
    view = view_with(
        ("nodes", node("n1")),
        ("nodes", node("n2")),
        ("pods", pod("a", "n1")),
        ("pods", pod("b", "n2")),
    )
    assert view.state.pods["jhub/a"].pinned == "n1"
    woken = asyncio.Event()
    view.wake_on_change("jhub/a", woken)
    event(view, "pods", pod("b", "n2"))  # another spawn's pod
    event(view, "nodes", node("n2", cordoned=True))  # another node
    assert not woken.is_set()
    event(view, "pods", pod("a", "n1"))
    assert woken.is_set()
    woken.clear()
    event(view, "nodes", node("n1", cordoned=True))  # its node, cordoned
    assert woken.is_set() and view.state.placement_problem("jhub/a") == "node n1 is cordoned"
    woken.clear()
    view.touched("pods", None)  # a relist
    assert woken.is_set()
    woken.clear()
    view.wake_on_change("jhub/a", None)  # it stopped waiting
    event(view, "pods", pod("a", "n1"))
    assert not woken.is_set() and not view._placement_waiters
