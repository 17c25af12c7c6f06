"""An admin's own profile_list (CPU, image choices, unlisted choice) beside GPU tiers.

A real JupyterHub, KubeSpawner and the emulated cluster: the CPU profile gets no GPU and
charges no quota; the GPU profile's image choice and free-text image reach the pod through
KubeSpawner's own override layering; the REST API accepts what KubeSpawner accepts for
those profiles and refuses anything else.
"""

from __future__ import annotations

import re

import pytest
from hub_harness import pods_of, spawn, wait_ready
from jupyterhub.tests.utils import get_page

PROFILES = [
    {
        "display_name": "CPU only",
        "slug": "cpu",
        "description": "2 CPUs, 4 GB, no GPU.",
        "kubespawner_override": {"cpu_limit": 2.0, "mem_limit": "4G"},
    },
    {
        "display_name": "GPU notebook",
        "slug": "gpu",
        "mig_tier": "notebook",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "pytorch": {
                        "display_name": "PyTorch",
                        "default": True,
                        "kubespawner_override": {
                            "image": "quay.io/jupyter/pytorch-notebook:cuda12"
                        },
                    },
                    "r": {
                        "display_name": "R",
                        "kubespawner_override": {"image": "quay.io/jupyter/r-notebook:2024-12-09"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "validation_regex": r"^quay\.io/[a-z0-9/_.-]+:[A-Za-z0-9_.-]+$",
                    "validation_message": "an image on quay.io, with a tag",
                    "kubespawner_override": {"image": "{value}"},
                },
            }
        },
    },
]


def _gpu_limits(pod):
    limits = pod["spec"]["containers"][0]["resources"].get("limits") or {}
    return {k: v for k, v in limits.items() if k.startswith("nvidia.com/")}


async def test_cpu_profile_gets_no_gpu_and_charges_no_quota(hub):
    app, cluster = await hub(extra={"KubeSpawner": {"profile_list": PROFILES}})
    r = await spawn(app, "bob", {"profile": "cpu"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    (pod,) = [p for p in cluster.pods if p["metadata"]["name"] == "jupyter-bob"]
    assert _gpu_limits(pod) == {}
    assert float(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"]) == 2.0
    assert not any(k.startswith("mig-spawner/charge") for k in pod["metadata"]["labels"])
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MIG_SPAWNER_PROFILE"] == "cpu" and env["MIG_SPAWNER_TIER"] == ""
    spawner = app.users["bob"].spawners[""]
    assert spawner.cluster_view().state.usage("vision", "bob").compute_slices == 0
    assert spawner.user_options["mig"] == {"profile": "cpu", "gpu": None}


async def test_gpu_profile_image_choice_and_unlisted_image_reach_the_pod(hub):
    app, cluster = await hub(extra={"KubeSpawner": {"profile_list": PROFILES}})
    r = await spawn(app, "bob", {"profile": "gpu", "image": "r"})
    assert r.status_code in (201, 202), r.text
    r = await spawn(
        app,
        "alice",
        {"profile": "gpu", "image--unlisted-choice": "quay.io/me/lab:1", "team": "nlp"},
    )
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    await wait_ready(app, "alice")
    (bob,) = pods_of(cluster, user="bob")
    assert bob["spec"]["containers"][0]["image"] == "quay.io/jupyter/r-notebook:2024-12-09"
    assert _gpu_limits(bob) == {"nvidia.com/mig-1g.10gb": "1"}
    assert bob["metadata"]["labels"]["mig-spawner/tier"] == "notebook"
    env = {e["name"]: e.get("value") for e in bob["spec"]["containers"][0]["env"]}
    assert (env["MIG_SPAWNER_PROFILE"], env["MIG_SPAWNER_TIER"]) == ("gpu", "notebook")
    (alice,) = pods_of(cluster, user="alice")
    assert alice["spec"]["containers"][0]["image"] == "quay.io/me/lab:1"
    assert alice["metadata"]["labels"]["mig-spawner/team"] == "nlp"
    view = app.users["bob"].spawners[""].cluster_view()
    assert view.state.usage("vision", "bob").compute_slices == 1


@pytest.mark.parametrize(
    "options, status, fragment",
    [
        ({"profile": "cpu", "cpu_limit": "64"}, 400, "accepts no 'cpu_limit'"),
        ({"profile": "gpu", "extra_resource_limits": "x"}, 400, "accepts no 'extra_resource"),
        (
            {"profile": "gpu", "image": "tensorflow"},
            400,
            "'tensorflow' is not a choice for 'Image'",
        ),
        (
            {"profile": "gpu", "image--unlisted-choice": "evil.example/x:1"},
            400,
            "is not a valid 'Image': an image on quay.io, with a tag",
        ),
        ({"profile": "nope"}, 400, "There is no profile 'nope'"),
        ({"tier": "notebook", "profile": "cpu"}, 400, "disagree"),
        ({"tier": "full"}, 403, "'7g full GPU' is only for members of vision"),
    ],
)
async def test_rest_refuses_what_kubespawner_would_not_accept(hub, options, status, fragment):
    app, cluster = await hub(extra={"KubeSpawner": {"profile_list": PROFILES}})
    r = await spawn(app, "carol", options)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]
    assert not pods_of(cluster, user="carol")


async def test_rest_tier_selects_the_profile_that_asks_for_it(hub):
    app, cluster = await hub(extra={"KubeSpawner": {"profile_list": PROFILES}})
    r = await spawn(app, "bob", {"tier": "notebook"})
    assert r.status_code in (201, 202), r.text
    await wait_ready(app, "bob")
    (pod,) = pods_of(cluster, user="bob")
    # the GPU profile's default image choice applied, on the notebook tier's slice
    assert pod["spec"]["containers"][0]["image"] == "quay.io/jupyter/pytorch-notebook:cuda12"
    assert app.users["bob"].spawners[""].user_options["mig"]["profile"] == "gpu"


async def test_form_lists_own_profiles_then_the_tiers_no_profile_asks_for(hub):
    app, _ = await hub(extra={"KubeSpawner": {"profile_list": PROFILES}})
    cookies = await app.login_user("alice")
    html = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    slugs = re.findall(
        r'<label for="profile-item-[^"]*"\s+class="[^"]*"\s+data-tier="([^"]+)"', html
    )
    assert slugs == ["cpu", "gpu", "training", "full"]  # notebook is placed by 'gpu'
    cpu = html.split('data-tier="cpu"')[1].split('data-tier="gpu"')[0]
    assert "No GPU" in cpu and "free" not in cpu
    gpu = html.split('data-tier="gpu"')[1].split('data-tier="training"')[0]
    assert "1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB" in gpu and "of 9 free" in gpu
    assert 'name="profile-option-gpu--image"' in gpu and ">Other...</option>" in gpu
    assert 'id="profile-option-gpu--team"' in gpu  # alice is in two teams


async def test_empty_profile_list_from_the_chart_means_none_of_my_own(hub):
    """Z2JH's default singleuser.profileList: [] reaches the hub as profile_list = []."""
    app, _ = await hub(extra={"KubeSpawner": {"profile_list": []}})
    cookies = await app.login_user("bob")
    html = (await get_page("spawn", app, cookies=cookies)).content.decode("utf-8")
    slugs = re.findall(
        r'<label for="profile-item-[^"]*"\s+class="[^"]*"\s+data-tier="([^"]+)"', html
    )
    assert slugs == ["notebook", "training", "full"]
    r = await spawn(app, "bob", {"tier": "training"})
    assert r.status_code in (201, 202), r.text
