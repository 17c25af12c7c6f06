"""The real Zero to JupyterHub 4.4.0 chart, rendered by a real helm, running its own hub config.

For each values layering an operator uses (``-f values.yaml -f values-<variant>.yaml``, and
the umbrella chart), ``helm template`` renders the chart; the hub Deployment's mounts,
environment and command are laid out by ``chart.hub_pod``; ``hubpod.py`` runs the chart's
``jupyterhub_config.py`` with the hub image's exact pins (.venv-z2jh: JupyterHub 5.5.0,
KubeSpawner 7.0.0, kubernetes-asyncio 36.1.0) against an emulated cluster, in a private
mount and network namespace. The assertions are what an operator would check by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import chart
import pytest
import yaml

from mig_spawner.cli.hubconfig import load_helm_values, policy_from_config

HERE = Path(__file__).resolve().parent
DEMO_CLUSTER = chart.ROOT / "mig_spawner" / "demo" / "clusters" / "demo.yaml"
TEST_VALUES = HERE / "values-chart-test.yaml"
TOKEN = yaml.safe_load(TEST_VALUES.read_text())["hub"]["services"]["chart-test"]["apiToken"]

VARIANTS = {
    "values.yaml": ([], DEMO_CLUSTER, "nlp"),
    "values-mixed-a100-h100.yaml": (["values-mixed-a100-h100.yaml"], DEMO_CLUSTER, "nlp"),
    "values-single-strategy.yaml": (
        ["values-single-strategy.yaml"],
        HERE / "clusters" / "single-pools.yaml",
        "nlp",
    ),
    "values-oauth-teams.yaml": (["values-oauth-teams.yaml"], DEMO_CLUSTER, "gpu-nlp"),
    "values-cpu-and-images.yaml": (["values-cpu-and-images.yaml"], DEMO_CLUSTER, "nlp"),
}
#: The form's profiles where the values add the admin's own singleuser.profileList: those
#: first, as written (a list, so Helm keeps its order), then every tier none asks for.
OWN_PROFILES_FORM = {"values-cpu-and-images.yaml": ["cpu", "gpu-notebook", "training", "full"]}


#: Variants whose hub needs more than the emulated cluster here: values-kueue.yaml's needs
#: Kueue. test_guide_kueue.py renders it through the chart as the guide installs it, builds
#: the hub's policy from the MIGSpawner section the hub receives, and has the real Kueue
#: accept and activate the guide's queues; tests/hub/test_kueue_queue.py runs a hub in
#: Kueue mode against the real Kueue (its own config, not this file's).
COVERED_ELSEWHERE = {"values-kueue.yaml": "test_guide_kueue.py"}


def test_every_values_file_is_covered():
    files = {p.name for p in chart.HELM_VALUES.glob("values*.yaml")}
    assert files == set(VARIANTS) | set(COVERED_ELSEWHERE)
    for test_file in COVERED_ELSEWHERE.values():
        assert (HERE / test_file).exists()


def z2jh_python() -> str:
    path = os.environ.get("MIG_SPAWNER_Z2JH_PYTHON") or str(chart.ROOT / ".venv-z2jh/bin/python")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no {path}: run `make z2jh-venv` (the hub image's pinned packages)")
    return path


def written_tier_order(files: list[Path]) -> list[str]:
    """The tiers in the order the admin wrote them (first file that lists them, then new ones)."""
    order: list[str] = []
    for path in files:
        values = yaml.safe_load(path.read_text()) or {}
        if "hub" not in values:  # an umbrella chart's values: Z2JH's under jupyterhub:
            values = values.get("jupyterhub", {})
        config = values.get("hub", {}).get("config", {})
        for slug in config.get("MIGSpawner", {}).get("tiers", {}) or {}:
            if slug not in order:
                order.append(slug)
    return order


#: values-oauth-teams.yaml reads the OAuth client from this Secret (hub.extraEnv), which the
#: operator creates beside the release: kubectl create secret generic jupyterhub-oauth ...
OAUTH_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "jupyterhub-oauth", "namespace": "jupyterhub"},
    "stringData": {"client_id": "chart-test", "client_secret": "chart-test-secret"},
}


def run_hub(manifests, cluster_file: Path, team: str, tmp_path: Path) -> dict:
    pod = chart.hub_pod(manifests, tmp_path / "root", existing=[OAUTH_SECRET])
    values = pod.values
    limit = values["hub"]["consecutiveFailureLimit"]
    (pod.root / "pod.json").write_text(
        json.dumps(
            {
                "command": pod.command,
                "proxy_command": pod.proxy_command,
                "env": pod.env,
                "workdir": str(pod.workdir),
            }
        )
    )
    tiers = list(values["hub"]["config"]["MIGSpawner"]["tiers"])
    authenticator = values["hub"]["config"]["JupyterHub"]["authenticator_class"]
    members = [f"{team}-{slug}" for slug in tiers]
    # a member of the two teams that rank first by `order` (not the first by key, which is
    # what the hub would take from Helm's sorted maps without `order`)
    quotas = values["hub"]["config"]["MIGSpawner"]["team_quotas"]
    first, second = sorted((t for t in quotas if quotas[t]), key=lambda t: quotas[t]["order"])[:2]
    groups = {team: list(members)}
    for t in (first, second):
        groups.setdefault(t, []).append("two-teams")
    plan = {
        "token": TOKEN,
        "groups": groups,
        "users": ["erin"],  # in no team: default_quota (1 compute slice, 1 server)
        # the form, through the login page: only with the chart's default DummyAuthenticator
        "forms": [members[0]] if authenticator == "dummy" else [],
        "spawns": [
            *({"user": u, "tier": t} for u, t in zip(members, tiers, strict=True)),
            {"user": "two-teams", "tier": "notebook", "teams": [first, second]},
        ],
        # more refusals in a row than the chart's consecutiveFailureLimit
        "refusals": {"user": "erin", "tier": "training", "count": limit + 2},
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "result.json"
    bins = [str(Path(z2jh_python()).parent), str(chart.ROOT / ".node/node_modules/.bin")]
    env = {**os.environ, "PATH": os.pathsep.join([*bins, os.environ["PATH"]])}
    cmd = ["unshare", "--mount", "--net", "--", z2jh_python(), str(HERE / "hubpod.py")]
    done = subprocess.run(
        [*cmd, str(pod.root), str(cluster_file), str(tmp_path / "plan.json"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    log = pod.root / "hub.log"
    log_text = log.read_text(errors="replace") if log.exists() else ""
    assert done.returncode == 0 and out.exists(), (
        f"hubpod.py failed ({done.returncode}):\n{done.stderr[-4000:]}\n"
        f"hub log:\n{log_text[-4000:]}"
    )
    result = json.loads(out.read_text())
    result["log_text"] = log_text
    result["limit"] = limit
    result["tiers"] = tiers
    result["plan"] = plan
    return result


def check_form(form: dict, written: list[str]) -> None:
    assert form["status"] == 200, form["html"][-2000:]
    assert form["tiers"] == written, (
        f"form shows {form['tiers']}, values file writes {written}:\n{form['html'][-3000:]}"
    )


def check_hub(result: dict, files: list[Path], form_profiles: list[str] | None = None) -> None:
    written = written_tier_order(files)
    # what `mig-spawner explain --config <files>` sees; the hub must see the same
    explained = policy_from_config(load_helm_values([str(f) for f in files]))
    assert list(explained.tiers) == written
    log = result["log_text"]
    # spawner_class: the chart sets kubespawner.KubeSpawner, hub.config's "mig" overrides it
    assert "Using Spawner: mig_spawner.hub.spawner.MIGSpawner" in log, log[-3000:]
    assert "Loading pass-through config section hub.config.MIGSpawner" in log
    # the form lists every tier, in the order the values file writes them
    forms = list(result["forms"].values())
    assert len(forms) == len(result["plan"]["forms"])
    for form in forms:
        check_form(form, form_profiles or written)
    # a REST spawn for each tier reaches admission and starts on the tier it asked for
    *per_tier, two_teams = result["spawns"]
    assert [s["tier"] for s in per_tier] == result["tiers"], result["spawns"]
    for spawn in result["spawns"]:
        assert spawn["status"] in (201, 202), spawn
        (line,) = spawn["admission"]  # the hub's decision line for this spawn
        assert f"tier={spawn['tier']} " in line and "outcome=refused" not in line, spawn
        assert spawn["ready"], spawn
        (labels,) = spawn["pod_labels"]
        assert labels["mig-spawner/tier"] == spawn["tier"]
    # the two-team user is charged to the team explain names: the first by order
    (team,) = explained.teams_for(set(two_teams["teams"]))[:1]
    assert team == two_teams["teams"][0], (team, two_teams)
    assert f" team={team} " in two_teams["admission"][0], two_teams
    assert two_teams["pod_labels"][0]["mig-spawner/team"] == team
    # quota refusals, more in a row than consecutiveFailureLimit, do not stop the hub
    refusals = result["refusals"]
    assert len(refusals) == result["limit"] + 2, refusals[-1]
    for r in refusals:
        assert r["hub_alive"] and r["api_status"] == 200, r
        (line,) = r["refused_line"]
        assert "outcome=refused" in line and "code=quota" in line, r
        assert not (r["server"] or {}).get("ready")
    assert result["alive_after_refusals"], log[-3000:]
    assert "consecutive spawn failures" not in log


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_chart_hub_runs_mig_spawner(variant, tmp_path):
    overlays, cluster_file, team = VARIANTS[variant]
    files = [chart.HELM_VALUES / "values.yaml", *(chart.HELM_VALUES / f for f in overlays)]
    manifests = chart.render([*files, TEST_VALUES])
    values = chart.values_seen_by_hub(manifests)
    # what Helm really hands the hub: map keys sorted, the chart's own defaults in place
    assert list(values["hub"]["config"]["MIGSpawner"]["tiers"]) == sorted(written_tier_order(files))
    assert values["hub"]["config"]["JupyterHub"]["spawner_class"] == "mig"
    assert values["hub"]["consecutiveFailureLimit"] == 5
    check_hub(
        run_hub(manifests, cluster_file, team, tmp_path), files, OWN_PROFILES_FORM.get(variant)
    )


def test_umbrella_chart_hub_runs_mig_spawner(tmp_path):
    nested = tmp_path / "values-chart-test.yaml"  # the subchart's values sit under jupyterhub:
    nested.write_text(yaml.safe_dump({"jupyterhub": yaml.safe_load(TEST_VALUES.read_text())}))
    manifests = chart.render_umbrella(tmp_path / "chart", [nested])
    # the umbrella's ClusterRoleBinding names the subchart's hub ServiceAccount
    sa = chart.find(manifests, "ServiceAccount", "hub")
    bindings = [
        d
        for d in manifests
        if d["kind"] == "ClusterRoleBinding" and "mig-spawner" in d["metadata"]["name"]
    ]
    (binding,) = bindings
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "jupyterhub"}
    ]
    check_hub(
        run_hub(manifests, DEMO_CLUSTER, "nlp", tmp_path / "run"), [chart.UMBRELLA / "values.yaml"]
    )


def test_unshare_is_available():
    """The chart tests need root and util-linux's unshare (CI runs as root)."""
    assert shutil.which("unshare") and shutil.which("ip") and os.getuid() == 0
