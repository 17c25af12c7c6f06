"""docs/deploy-z2jh.md: the commands it gives match the files and the code they describe."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from traitlets.config import Config
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


def explain_config_snippet() -> str:
    """The Python the guide pipes into python3 to write mig-config.py for `explain`."""
    (snippet,) = re.findall(r"> mig-config\.py <<'EOF'\n(.*?)\nEOF\n", DOC.read_text(), re.S)
    return snippet


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_explain_config_written_by_the_guide_matches_the_deployment(name):
    files = [str(p) for p in DEPLOYMENTS[name]]
    out = subprocess.run(
        [sys.executable, "-", *files],
        input=explain_config_snippet(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    cfg = Config()
    exec(compile(out, "mig-config.py", "exec"), {"get_config": lambda: cfg})
    assert mig_settings(cfg) == mig_settings(hub_config(chart_values(*DEPLOYMENTS[name])))


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
