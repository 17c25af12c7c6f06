"""Which ``FailedScheduling`` events mean "not on this node" (hub/placing.py).

A start whose pod the scheduler cannot place on its reserved node is decided again
elsewhere. A pod waiting for its home volume's claim to bind (Zero to JupyterHub creates
the PVC just before the pod) also gets a ``FailedScheduling`` -- one the scheduler
resolves by itself once the claim binds: moving the start for it refused a 7g spawn on
the real chart (a tier whose only slice was on that node)."""

from __future__ import annotations

from types import SimpleNamespace

from mig_spawner.hub.placing import PlacementMixin

UID = "uid-1"


def start_with(message: str):
    event = {
        "reason": "FailedScheduling",
        "message": message,
        "involvedObject": {"uid": UID},
    }
    return SimpleNamespace(
        events=[event],
        events_enabled=True,
        tiers={"full": {}},
        _attempt_pod_uid=UID,
        _current_view=lambda: None,
        pod_key="jhub/jupyter-u",
        claim=SimpleNamespace(node="gpu-h100-b"),
    )


def test_a_node_that_cannot_take_the_pod_moves_the_start():
    start = start_with("0/3 nodes are available: 1 Insufficient nvidia.com/mig-7g.80gb.")
    problem = PlacementMixin._failed_scheduling(start)
    assert problem is not None and "cannot place it on gpu-h100-b" in problem
    assert "Insufficient nvidia.com/mig-7g.80gb" in problem


def test_a_volume_claim_not_bound_yet_does_not():
    message = "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    assert PlacementMixin._failed_scheduling(start_with(message)) is None
