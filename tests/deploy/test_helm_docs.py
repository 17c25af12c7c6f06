"""docs/deploy-z2jh.md: the commands it gives match the files and the code they describe."""

from __future__ import annotations

import pytest
from z2jh_values import (
    DEPLOYMENTS,
    HELM_VALUES,
    ROOT,
    VARIANTS,
    chart_values,
    hub_config,
    mig_settings,
)

DOC = ROOT / "docs" / "deploy-z2jh.md"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_explain_on_the_deployed_values_files_sees_the_hubs_settings(name):
    """Step 6 gives explain the values files themselves (tests/z2jh runs its commands)."""
    from mig_spawner.cli.hubconfig import load_helm_values

    files = [str(p) for p in DEPLOYMENTS[name]]
    helm = hub_config(chart_values(*DEPLOYMENTS[name]))
    assert mig_settings(load_helm_values(files)) == mig_settings(helm)
    assert "--config helm-values/values.yaml --config helm-values/values-" in DOC.read_text()


def test_rbac_checks_cover_every_call_the_watcher_makes():
    from mig_spawner.hub.watch import CLUSTER_API_CALLS

    doc = DOC.read_text()
    for _group, resource, verb in CLUSTER_API_CALLS:
        namespaced = " --all-namespaces" if resource == "pods" else ""
        assert f"kubectl auth can-i {verb} {resource}{namespaced} --as=$SA" in doc


def test_guide_names_every_file_it_relies_on():
    doc = DOC.read_text()
    files = [*VARIANTS.values(), HELM_VALUES / "values.yaml"]
    files += sorted((HELM_VALUES / "rbac").glob("*.yaml"))
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        assert rel in doc or path.name in doc, rel
        assert path.exists(), rel
