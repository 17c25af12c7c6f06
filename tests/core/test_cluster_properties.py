"""Property test of ClusterState: the incrementally kept state equals one rebuilt from scratch
after any sequence of node and pod events and relists (strategies in ``k8s_strategies.py``).
"""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from k8s_factories import pod
from k8s_strategies import (
    NODE_NAMES,
    POD_NAMES,
    RESOURCES,
    TEAMS,
    USERS,
    build_state,
    gpu_node,
)

from mig_spawner.core.cluster import ADDED, DELETED, MODIFIED, ClusterState
from mig_spawner.core.nodes import NodeInfo
from mig_spawner.core.pods import TERMINAL_PHASES


@st.composite
def pod_objects(draw, namespace, name):
    managed = namespace == "jhub"
    user = draw(st.sampled_from(sorted(USERS)))
    return pod(
        name,
        namespace=namespace,
        node=draw(st.sampled_from([None, *NODE_NAMES, "gone-node"])),
        resources=draw(st.dictionaries(st.sampled_from(RESOURCES), st.integers(1, 2), max_size=2)),
        phase=draw(st.sampled_from([None, "Pending", "Running", *TERMINAL_PHASES])),
        user=user if managed else None,
        team=draw(st.sampled_from([None, *USERS[user]])) if managed else None,
        requested_profile=draw(st.sampled_from(["", "1g.10gb", "3g.40gb"])) if managed else "",
        charge_mode=draw(st.sampled_from(["granted", "requested"])),
        server_name=draw(st.sampled_from(["", "gpu"])),
    )


@st.composite
def cluster_events(draw):
    kind = draw(st.sampled_from(["node", "node", "pod", "pod", "pod", "relist"]))
    if kind == "node":
        name = draw(st.sampled_from(NODE_NAMES))
        return ("node", draw(st.sampled_from([ADDED, MODIFIED, DELETED])), draw(gpu_node(name)))
    if kind == "pod":
        namespace, name = draw(st.sampled_from(POD_NAMES))
        event = draw(st.sampled_from([ADDED, MODIFIED, DELETED]))
        return ("pod", event, draw(pod_objects(namespace, name)))
    return ("relist", draw(st.sampled_from(["nodes", "pods"])), None)


def _usage_tuple(state: ClusterState, team: str, user: str):
    u = state.usage(team, user)
    return (u.compute_slices, u.memory_gb, u.servers, u.user_compute_slices, u.own_servers)


def assert_same_state(state: ClusterState, rebuilt: ClusterState) -> None:
    assert set(state.nodes) == set(rebuilt.nodes)
    assert set(state.pods) == set(rebuilt.pods)
    assert state.slice_types() == rebuilt.slice_types()
    for kind in rebuilt.slice_types():
        assert [n.name for n in state.nodes_offering(kind)] == [
            n.name for n in rebuilt.nodes_offering(kind)
        ]
    for name, info in rebuilt.nodes.items():
        mine: NodeInfo = state.nodes[name]
        assert mine == info
        for kind in info.offers:
            assert state.free(mine, kind) == rebuilt.free(info, kind), (name, kind.label)
    for user in USERS:
        for team in ("", *TEAMS, "interns"):
            assert _usage_tuple(state, team, user) == _usage_tuple(rebuilt, team, user)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(cluster_events(), max_size=40))
def test_incremental_state_equals_a_state_rebuilt_from_scratch(events):
    state = ClusterState()
    nodes: dict[str, dict] = {}
    pods: dict[str, dict] = {}
    for what, event_type, obj in events:
        if what == "relist":
            if event_type == "nodes":
                assert state.replace_nodes(list(nodes.values())) == []
            else:
                assert state.replace_pods(list(pods.values())) == []
            continue
        meta = obj["metadata"]
        key = meta["name"] if what == "node" else f"{meta['namespace']}/{meta['name']}"
        world = nodes if what == "node" else pods
        if event_type == DELETED:
            world.pop(key, None)
        else:
            world[key] = obj
        apply = state.apply_node_event if what == "node" else state.apply_pod_event
        apply(event_type, obj)
    assume(nodes or pods)
    rebuilt = build_state(nodes.values(), pods.values())
    assert_same_state(state, rebuilt)
