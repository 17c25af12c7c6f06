"""The umbrella chart, rendered by the real helm, lets the hub keep its waiting line: the
Role it renders allows exactly the calls hub/linestore makes on the line's ConfigMap, for
the hub_id the hub is configured with, bound to the chart's hub ServiceAccount."""

from __future__ import annotations

import sys
from pathlib import Path

import chart

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from test_helm_rbac import line_calls, line_grants


def _line_docs(rendered: list[dict]) -> tuple[dict, dict]:
    (role,) = [
        d for d in rendered if d["kind"] == "Role" and "mig-spawner" in d["metadata"]["name"]
    ]
    (binding,) = [
        d for d in rendered if d["kind"] == "RoleBinding" and "mig-spawner" in d["metadata"]["name"]
    ]
    return role, binding


def test_rendered_line_role_allows_exactly_what_linestore_calls(tmp_path):
    rendered = chart.render_umbrella(tmp_path / "a", release="gpu", namespace="research")
    role, binding = _line_docs(rendered)
    assert line_grants(role["rules"]) == line_calls("jupyterhub")
    assert role["metadata"]["namespace"] == "research"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # the ServiceAccount the chart's hub Deployment runs as
    (deployment,) = [
        d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub"
    ]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "research"}
    ]
    # The chart's own hub Role has no configmaps: without ours the line could not be kept.
    (hub_role,) = [d for d in rendered if d["kind"] == "Role" and d["metadata"]["name"] == "hub"]
    assert not any("configmaps" in r["resources"] for r in hub_role["rules"])


def test_rendered_line_role_follows_the_hubs_hub_id(tmp_path):
    values = tmp_path / "hub-id.yaml"
    values.write_text(
        "jupyterhub:\n  hub:\n    config:\n      MIGSpawner:\n        hub_id: lab-2\n"
    )
    role, _ = _line_docs(chart.render_umbrella(tmp_path / "b", [values], release="gpu"))
    assert line_grants(role["rules"]) == line_calls("lab-2")
    assert line_grants(role["rules"]) != line_calls("jupyterhub")


def test_the_guides_line_rbac_commands_apply_the_role_in_the_hubs_namespace(tmp_path):
    """docs/deploy-z2jh.md step 3's commands for the line, run with a kubectl stub."""
    import yaml
    from test_guide_commands import KUBECTL_STUB, bash, block

    script = block("bash", "helm-values/rbac/role.yaml")
    assert script.startswith("NS=jupyterhub\n")
    out = tmp_path / "out"
    out.mkdir()
    bash(KUBECTL_STUB + "NS=research\n" + script.split("\n", 1)[1], chart.ROOT, OUT=str(out))
    role, binding = [
        yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"), key=lambda p: int(p.stem))
    ]
    assert role["kind"] == "Role" and binding["kind"] == "RoleBinding"
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "research"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "research"}
    ]
    assert line_grants(role["rules"]) == line_calls("jupyterhub")
