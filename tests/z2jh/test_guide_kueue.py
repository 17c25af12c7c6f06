"""docs/deploy-z2jh.md, "Share GPU quota with batch jobs through Kueue", walked.

As in test_guide_commands.py, each test runs a block of the guide verbatim with bash; a
command that would reach a cluster records what it was given. ``helm install kueue
oci://registry.k8s.io/kueue/charts/kueue`` becomes a real ``helm template`` of Kueue's own
chart from the module that ``make k8s`` builds Kueue from (tests/controlplane/kueue/go.mod),
so the configuration the guide installs is the one Kueue's chart renders from it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import chart
import yaml
from test_guide_commands import (
    KUBECTL_STUB,
    RECORD,
    SNAPSHOT,
    _n,
    bash,
    block,
    helm_template_stub,
    workspace,
)
from traitlets.config import Config

from mig_spawner.cli.hubconfig import policy_from_config
from mig_spawner.cli.snapshot import build_state, load_snapshot
from mig_spawner.core.admission import chain_rows
from mig_spawner.core.policy import Quota
from mig_spawner.hub.config import policy_settings

KUEUE_MODULE = chart.ROOT / "tests" / "controlplane" / "kueue"
QUEUES = chart.HELM_VALUES / "kueue" / "queues.yaml"
CHART_VALUES = chart.HELM_VALUES / "kueue" / "kueue-chart-values.yaml"


def kueue_version() -> str:
    text = (KUEUE_MODULE / "go.mod").read_text()
    return re.search(r"^\s*sigs\.k8s\.io/kueue (v\S+)", text, re.M).group(1)


def kueue_chart() -> Path:
    """Kueue's chart in the module cache (downloaded by ``make k8s``'s Kueue build)."""
    done = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kueue"],
        cwd=KUEUE_MODULE,
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip(), (
        f"go list -m sigs.k8s.io/kueue failed (run `make k8s`): {done.stderr}"
    )
    return Path(done.stdout.strip()) / "charts" / "kueue"


def helm_kueue_stub(out: Path) -> str:
    """``helm install kueue oci://.../kueue --version V ...`` -> helm template of that chart."""
    helm, local = shlex.quote(chart.helm()), shlex.quote(str(kueue_chart()))
    return (
        RECORD
        + f"""
helm() {{
  record helm "$@"
  [[ "$1 $2 $3" == "install kueue oci://registry.k8s.io/kueue/charts/kueue" ]] || return 1
  shift 3
  local args=()
  while (($#)); do
    case "$1" in
      --version) [[ "$2" == {kueue_version().lstrip("v")} ]] || {{ echo "not $2" >&2; return 1; }}
        shift 2 ;;
      --create-namespace) shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  {helm} template kueue {local} "${{args[@]}}" > {shlex.quote(str(out / "kueue.yaml"))}
}}
"""
    )


def test_kueue_install_enables_the_pod_integration_for_the_labelled_namespace(tmp_path):
    work = workspace(tmp_path)
    (work / "helm-values").unlink()
    (work / "helm-values").symlink_to(chart.HELM_VALUES)
    script = block("bash", "helm install kueue oci://registry.k8s.io/kueue/charts/kueue")
    out = tmp_path / "out"
    out.mkdir()
    bash(helm_kueue_stub(out) + KUBECTL_STUB + script, work, OUT=str(out))
    rendered = [d for d in yaml.safe_load_all((out / "kueue.yaml").read_text()) if d]
    (config_map,) = [
        d
        for d in rendered
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("manager-config")
    ]
    config = yaml.safe_load(config_map["data"]["controller_manager_config.yaml"])
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert {"pod", "batch/job"} <= set(config["integrations"]["frameworks"])
    assert config.get("manageJobsWithoutQueueName", False) is False
    selector = config["managedJobsNamespaceSelector"]
    assert selector == {"matchLabels": {"kueue-managed": "true"}}
    # the chart makes that selector the pod webhook's, with failurePolicy Fail
    (mutating,) = [d for d in rendered if d["kind"] == "MutatingWebhookConfiguration"]
    (pod_hook,) = [w for w in mutating["webhooks"] if w["name"] == "mpod.kb.io"]
    assert pod_hook["namespaceSelector"] == selector
    assert pod_hook["failurePolicy"] == "Fail"
    # the namespace the guide labels is the hub's, with that label
    calls = [p.read_text().split() for p in sorted(out.glob("*.args"), key=_n)]
    label = [c for c in calls if c[:3] == ["kubectl", "label", "namespace"]]
    assert label == [["kubectl", "label", "namespace", "jupyterhub", "kueue-managed=true"]]


def test_the_guides_queues_are_accepted_and_active_in_the_real_kueue(tmp_path, kueue_queues):
    """Step 2 verbatim, for the test namespace: the real Kueue validates and activates them."""
    from kueue_harness import NAMESPACE, condition

    script = block("bash", "helm-values/kueue/queues.yaml")
    assert script.startswith("NS=jupyterhub\n")
    script = f"NS={NAMESPACE}\n" + script.split("\n", 1)[1]
    out = tmp_path / "out"
    out.mkdir()
    bash(KUBECTL_STUB + script, chart.ROOT, OUT=str(out))
    (manifest,) = sorted(out.glob("*.yaml"), key=_n)
    objects = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert {o["metadata"].get("namespace", NAMESPACE) for o in objects} == {NAMESPACE}
    kueue = kueue_queues
    for obj in objects:
        kueue.apply(obj)  # Kueue's CRD schemas and validating webhooks accept each
    for obj in objects:
        if obj["kind"] not in ("ClusterQueue", "LocalQueue"):
            continue
        path = kueue.path(obj)
        kueue.wait(
            f"{obj['kind']} {obj['metadata']['name']} active",
            lambda path=path: (
                condition(kueue.plane.request("GET", path)[1], "Active").get("status") == "True"
            ),
            timeout=30,
        )


def test_the_kueue_variant_maps_every_team_to_a_guide_queue_covering_its_chains(tmp_path):
    """Step 4's values.yaml + values-kueue.yaml as the hub receives them (the real chart):
    Kueue mode on, no quota of mig-spawner's own, each team's LocalQueue one the guide
    creates, and each of those queues covering every resource the tiers' chains reach on
    the H100 80GB nodes the queues are written for (Kueue admits a pod only if its
    ClusterQueue covers each resource the pod requests)."""
    work = workspace(tmp_path)  # step 4 of the section, verbatim, as helm template
    (work / "my-site.yaml").write_text(block("yaml", "# my-site.yaml\nhub:\n  image:"))
    bash(helm_template_stub(work) + block("bash", "-f helm-values/values-kueue.yaml"), work)
    rendered = [d for d in yaml.safe_load_all((work / "rendered.yaml").read_text()) if d]
    values = chart.values_seen_by_hub(rendered)
    mig = values["hub"]["config"]["MIGSpawner"]
    config = Config({"MIGSpawner": mig})
    policy = policy_from_config(config)
    assert policy.kueue is not None
    assert policy_settings(config)["default_quota"] is None
    # the teams are local_queues' keys, with no limit of mig-spawner's own
    assert all(quota == Quota() for quota in policy.team_quotas.values())

    objects = [d for d in yaml.safe_load_all(QUEUES.read_text()) if d]
    local = {
        o["metadata"]["name"]: o["spec"]["clusterQueue"]
        for o in objects
        if o["kind"] == "LocalQueue"
    }
    cluster_queues = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterQueue"}
    priorities = {o["metadata"]["name"] for o in objects if o["kind"] == "WorkloadPriorityClass"}
    kueue = policy.kueue
    assert set(kueue.local_queues) == {"vision", "nlp"} == set(policy.team_quotas)
    named = [*kueue.local_queues.values(), kueue.default_local_queue]
    assert set(named) <= set(local), "a team's LocalQueue the guide does not create"
    assert kueue.priority_class in priorities

    state, _ = build_state(load_snapshot(str(SNAPSHOT)))
    reached = {
        row.slice_type.resource
        for tier in policy.tiers.values()
        for row in chain_rows(tier, state, policy)
    }
    assert "nvidia.com/mig-1g.10gb" in reached and "nvidia.com/mig-7g.80gb" in reached
    for queue in named:
        spec = cluster_queues[local[queue]]["spec"]
        covered = {r for g in spec["resourceGroups"] for r in g["coveredResources"]}
        assert reached | {"cpu", "memory"} <= covered, (queue, reached - covered)
