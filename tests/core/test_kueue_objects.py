"""Kueue mode's core: ClusterQueue room with borrowing, Workload states,
positions, garbled objects, and the one decision falling back on ClusterQueue quota."""

import pytest
from k8s_factories import node

from mig_spawner.core import admission as adm
from mig_spawner.core import kueue
from mig_spawner.core.admission import SpawnRequest, decide
from mig_spawner.core.cluster import ADDED, ClusterState
from mig_spawner.core.policy import build_policy

R1, R2 = "nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb"
NS = "jhub"
TIERS = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
    }
}
KUEUE = {"local_queues": {"vision": "team-vision-lq"}, "default_local_queue": "shared-lq"}


def cq(name, quotas, used=None, cohort=None, flavor="mig"):
    """A ClusterQueue as the API returns it; quotas: resource -> nominal or dict."""
    resources = []
    for res, q in quotas.items():
        q = q if isinstance(q, dict) else {"nominalQuota": q}
        resources.append({"name": res, **q})
    obj = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "resourceGroups": [
                {
                    "coveredResources": list(quotas),
                    "flavors": [{"name": flavor, "resources": resources}],
                }
            ]
        },
    }
    if cohort:
        obj["spec"]["cohortName"] = cohort
    if used is not None:
        obj["status"] = {
            "flavorsReservation": [
                {
                    "name": flavor,
                    "resources": [{"name": r, "total": str(n)} for r, n in used.items()],
                }
            ]
        }
    return obj


def lq(name, cluster_queue, namespace=NS):
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue},
    }


def wl(name, conditions=(), owner_uid="uid-1", cluster_queue=None):
    status = {
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions
        ]
    }
    if cluster_queue:
        status["admission"] = {"clusterQueue": cluster_queue}
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "ownerReferences": [{"kind": "Pod", "name": "jupyter-a", "uid": owner_uid}],
        },
        "status": status,
    }


def objects(*cqs, lqs=()):
    out = kueue.KueueObjects().replaced("clusterqueues", cqs)
    return out.replaced("localqueues", lqs)


# ---------------------------------------------------------------------- quantities and room


@pytest.mark.parametrize(
    "text, value",
    [
        ("4", 4),
        (4, 4),
        ("500m", 0.5),
        ("2Gi", 2**31),
        ("1k", 1000),
        ("1.5", 1.5),
        ("x", None),
        (None, None),
        (True, None),
    ],
)
def test_quantity(text, value):
    assert kueue.quantity(text) == value


def test_room_of_a_lone_cluster_queue():
    cqs = {"team-vision": kueue.parse_cluster_queue(cq("team-vision", {R1: 4}, used={R1: 4}))}
    r = kueue.room(cqs, "team-vision", R1)
    assert (r.nominal, r.used, r.left, r.borrowable) == (4, 4, 0, 0)
    assert r.describe() == "ClusterQueue team-vision has 0 of 4 nvidia.com/mig-1g.10gb left"
    assert kueue.room(cqs, "team-vision", R2) is None  # in none of its flavors: not known
    assert kueue.room(cqs, "nope", R1) is None


def test_room_counts_what_the_cohort_lends_capped_by_lending_and_borrowing_limits():
    cqs = {
        c.name: c
        for c in map(
            kueue.parse_cluster_queue,
            [
                cq("a", {R1: {"nominalQuota": 2, "borrowingLimit": 3}}, used={R1: 2}, cohort="lab"),
                cq("b", {R1: {"nominalQuota": 4, "lendingLimit": 1}}, used={R1: 0}, cohort="lab"),
                cq("c", {R1: 5}, used={R1: 1}, cohort="lab"),
                cq("d", {R1: 9}, used={}, cohort="elsewhere"),
            ],
        )
    }
    r = kueue.room(cqs, "a", R1)
    # b lends at most 1, c its 4 unused: 5, capped by a's borrowingLimit 3
    assert (r.left, r.borrowable) == (3, 3)
    assert "incl. 3 borrowed from its cohort" in r.describe()
    # a already borrows 2 of its 3: 1 more
    cqs["a"] = kueue.parse_cluster_queue(
        cq("a", {R1: {"nominalQuota": 2, "borrowingLimit": 3}}, used={R1: 4}, cohort="lab")
    )
    assert kueue.room(cqs, "a", R1).left == 1
    assert kueue.room(cqs, "d", R1).left == 9  # another cohort lends nothing


def test_a_cluster_queue_without_status_has_no_room_figure():
    cqs = {"a": kueue.parse_cluster_queue(cq("a", {R1: 4}))}
    assert cqs["a"].used is None and kueue.room(cqs, "a", R1) is None


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"metadata": {}},
        {"metadata": {"name": 3}},
        {"metadata": "x"},
    ],
)
def test_garbled_objects_are_not_known(obj):
    assert kueue.parse_cluster_queue(obj) is None
    assert kueue.parse_workload(obj) is None
    assert kueue.parse_local_queue(obj) is None
    objs = kueue.KueueObjects()
    for kind in kueue.KINDS:
        assert objs.applied(kind, ADDED, obj) == objs


def test_garbled_fields_are_skipped_not_raised():
    c = kueue.parse_cluster_queue(
        {
            "metadata": {"name": "a"},
            "spec": {
                "resourceGroups": [
                    "x",
                    {
                        "flavors": [
                            {"name": "f", "resources": [{"name": R1, "nominalQuota": "lots"}, 7]}
                        ]
                    },
                ],
                "cohortName": 5,
            },
            "status": {"flavorsReservation": "garbage"},
        }
    )
    assert c.quotas == {} and c.cohort is None and c.used == {}
    assert (
        kueue.parse_workload({"metadata": {"name": "w"}, "status": {"conditions": "x"}}).phase
        == kueue.PENDING
    )


# ---------------------------------------------------------------------- Workloads and positions


def test_workload_states():
    pending = kueue.parse_workload(
        wl(
            "pod-a",
            [("QuotaReserved", "False", "Pending", "couldn't assign flavors: insufficient quota")],
        )
    )
    assert (pending.phase, pending.reason) == (kueue.PENDING, "Pending")
    assert "insufficient quota" in pending.message and pending.pod_uids == ("uid-1",)
    reserved = kueue.parse_workload(
        wl(
            "w",
            [("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue a")],
            cluster_queue="a",
        )
    )
    assert reserved.phase == kueue.RESERVED and reserved.cluster_queue == "a"
    admitted = kueue.parse_workload(
        wl(
            "w",
            [
                ("QuotaReserved", "True", "", ""),
                ("Admitted", "True", "Admitted", "The workload is admitted"),
            ],
        )
    )
    assert admitted.phase == kueue.ADMITTED and not admitted.stopped_by_kueue
    preempted = kueue.parse_workload(
        wl(
            "w",
            [
                ("Admitted", "False", "", ""),
                ("Evicted", "True", "Preempted", "Preempted to accommodate a workload"),
                (
                    "Preempted",
                    "True",
                    "InClusterQueue",
                    "Preempted to accommodate a workload (UID: x) due to prioritization",
                ),
            ],
        )
    )
    assert (preempted.phase, preempted.reason) == (kueue.PREEMPTED, "InClusterQueue")
    assert preempted.stopped_by_kueue
    evicted = kueue.parse_workload(
        wl("w", [("Evicted", "True", "ClusterQueueStopped", "The ClusterQueue is stopped")])
    )
    assert (evicted.phase, evicted.message) == (kueue.EVICTED, "The ClusterQueue is stopped")
    finished = kueue.parse_workload(
        wl("w", [("Finished", "True", "Succeeded", ""), ("Evicted", "True", "x", "")])
    )
    assert finished.phase == kueue.FINISHED


def test_objects_follow_events_and_find_a_pods_workload():
    objs = kueue.KueueObjects()
    assert objs.has_local_queue(NS, "a") is None  # never listed: not known
    objs = objs.replaced("localqueues", [lq("a", "team-a")])
    assert objs.has_local_queue(NS, "a") and not objs.has_local_queue(NS, "b")
    assert objs.cluster_queue_of(NS, "a") == "team-a"
    objs = objs.applied("workloads", "ADDED", wl("pod-x", owner_uid="u9"))
    assert objs.workload_of_pod("u9").name == "pod-x" and objs.workload_of_pod("u1") is None
    objs = objs.applied("workloads", "DELETED", wl("pod-x", owner_uid="u9"))
    assert objs.workload_of_pod("u9") is None
    objs = objs.applied("localqueues", "DELETED", lq("a", "team-a"))
    assert objs.has_local_queue(NS, "a") is False


def test_position_in_a_pendingworkloads_answer():
    answer = {
        "kind": "PendingWorkloadsSummary",
        "items": [
            {"metadata": {"name": "job-1"}, "positionInClusterQueue": 0, "positionInLocalQueue": 0},
            {
                "metadata": {"name": "pod-nb"},
                "positionInClusterQueue": 2,
                "positionInLocalQueue": 1,
            },
        ],
    }
    assert kueue.position(answer, "pod-nb") == (2, 3)
    assert kueue.position(answer, "absent") is None
    assert (
        kueue.position({"items": [{"metadata": {"name": "w"}, "positionInLocalQueue": "1"}]}, "w")
        is None
    )
    assert kueue.position("garbage", "w") is None and kueue.position({"items": 3}, "w") is None


# ---------------------------------------------------------------------- the decision


def kueue_state(vision_used, vision_quota=None, shared=None):
    state = ClusterState()
    state.kueue_namespace = NS
    state.apply_node_event(ADDED, node("h1", mig=["1g.10gb"] * 3 + ["2g.20gb", "3g.40gb"]))
    quota = vision_quota or {R1: 4, R2: 2}
    state.replace_kueue("clusterqueues", [cq("team-vision", quota, used=vision_used)])
    state.replace_kueue(
        "localqueues", [lq("team-vision-lq", "team-vision"), lq("shared-lq", "shared")]
    )
    return state


def decide_kueue(state, groups=("vision",)):
    policy = build_policy(tiers=TIERS, kueue=KUEUE)
    return decide(SpawnRequest("alice", "notebook", groups=groups), policy, state)


def test_kueue_room_left_grants_the_preferred_slice_and_says_the_figures():
    d = decide_kueue(kueue_state({R1: 1}))
    assert d.admitted and d.granted.profile == "1g.10gb" and not d.fallback
    assert d.kueue_room.left == 3
    assert "ClusterQueue team-vision has 3 of 4 nvidia.com/mig-1g.10gb left" in d.message
    assert d.to_dict()["kueue"].startswith("ClusterQueue team-vision has 3 of 4")


def test_no_room_for_1g_in_the_cluster_queue_falls_back_to_2g_and_says_why():
    d = decide_kueue(kueue_state({R1: 4, R2: 0}))
    assert d.admitted and d.granted.profile == "2g.20gb" and d.fallback
    assert d.candidates[0].outcome == adm.OVER_QUOTA
    assert (
        d.candidates[0].reason == "ClusterQueue team-vision has 0 of 4 nvidia.com/mig-1g.10gb left"
    )
    assert d.message.startswith("Starting on the larger 1 × 2g.20gb")
    assert "ClusterQueue team-vision has 0 of 4 nvidia.com/mig-1g.10gb left" in d.message


def test_no_room_anywhere_admits_the_preferred_slice_for_kueue_to_hold():
    d = decide_kueue(
        kueue_state({R1: 4, R2: 2}, vision_quota={R1: 4, R2: 2, "nvidia.com/mig-3g.40gb": 0})
    )
    assert d.admitted and d.granted.profile == "1g.10gb" and not d.fallback
    assert d.message.startswith("Queued in Kueue for 1 × 1g.10gb")
    assert "ClusterQueue team-vision has 0 of 4 nvidia.com/mig-1g.10gb left" in d.message
    assert [c.outcome for c in d.candidates] == [adm.GRANTED]


def test_room_not_known_leaves_quota_to_kueue():
    state = kueue_state({R1: 4})
    state.replace_kueue("clusterqueues", [])  # ClusterQueue not (yet) seen
    d = decide_kueue(state)
    assert d.admitted and d.granted.profile == "1g.10gb" and d.kueue_room is None


def test_capacity_shortage_stays_ours():
    state = kueue_state({R1: 0})
    for res, n in ((R1, 3),):
        for i in range(n):
            state.apply_pod_event(
                ADDED,
                {
                    "metadata": {"name": f"busy-{i}", "namespace": "x", "uid": f"b{i}"},
                    "spec": {
                        "nodeName": "h1",
                        "containers": [{"name": "c", "resources": {"limits": {res: 1}}}],
                    },
                    "status": {"phase": "Running"},
                },
            )
    d = decide_kueue(state)
    assert d.admitted and d.granted.profile == "2g.20gb"  # 1g full: capacity fallback as ever
    assert d.candidates[0].outcome == adm.FULL


def test_a_user_in_no_team_uses_the_default_queue_or_is_refused():
    d = decide_kueue(kueue_state({}), groups=())
    assert d.admitted and d.team is None  # shared-lq's ClusterQueue unknown: Kueue decides
    policy = build_policy(tiers=TIERS, kueue={"local_queues": {"vision": "team-vision-lq"}})
    d = decide(SpawnRequest("bob", "notebook"), policy, kueue_state({}))
    assert not d.admitted and d.code == adm.NO_QUEUE
    assert "you are in no team" in d.message


def test_a_kueue_event_moves_the_cache_version():
    state = kueue_state({})
    snap = state.snapshot()
    state.apply_kueue_event("clusterqueues", "MODIFIED", cq("team-vision", {R1: 4}, used={R1: 4}))
    assert not snap.current
    assert state.snapshot().kueue.cluster_queues["team-vision"].used[("mig", R1)] == 4


def admitted_wl(name, cq_name, resource, n, phase_conditions=None):
    obj = wl(
        name,
        phase_conditions
        or [("QuotaReserved", "True", "QuotaReserved", ""), ("Admitted", "True", "Admitted", "")],
        cluster_queue=cq_name,
    )
    obj["status"]["admission"]["podSetAssignments"] = [
        {"name": "main", "flavors": {resource: "mig"}, "resourceUsage": {resource: str(n)}}
    ]
    return obj


def test_workloads_seen_count_when_the_cluster_queue_status_lags():
    """Kueue writes a ClusterQueue's status seconds after it admits a Workload: the
    Workloads the hub sees count at once (the larger of the two figures)."""
    objs = objects(cq("team-vision", {R1: 2}, used={R1: 0}), lqs=[lq("lq", "team-vision")])
    assert objs.room(NS, "lq", R1).left == 2
    objs = objs.applied("workloads", "ADDED", admitted_wl("job-training", "team-vision", R1, 2))
    assert objs.room(NS, "lq", R1).left == 0
    assert objs.workloads[(NS, "job-training")].usage == {("mig", R1): 2}
    # a finished or evicted Workload holds nothing
    done = admitted_wl(
        "job-training", "team-vision", R1, 2, [("Finished", "True", "Succeeded", "")]
    )
    assert objs.applied("workloads", "MODIFIED", done).room(NS, "lq", R1).left == 2
    # the status catching up is not counted twice
    objs = objs.replaced("clusterqueues", [cq("team-vision", {R1: 2}, used={R1: 2})])
    assert objs.room(NS, "lq", R1).left == 0


def test_the_form_shows_the_cluster_queues_room_where_it_shows_team_quota():
    from mig_spawner.core.form import build_profile_list

    policy = build_policy(tiers=TIERS, kueue=KUEUE)
    (profile,) = build_profile_list(
        policy, kueue_state({R1: 1}), user="alice", groups=("vision",), known=True
    )
    assert profile["mig"]["quota"] == (
        "team vision: ClusterQueue team-vision has 3 of 4 nvidia.com/mig-1g.10gb left"
    )
