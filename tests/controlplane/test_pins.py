"""The real control plane's pins: one version each, and the staging replaces derived, not kept.

tests/controlplane/{kubernetes,etcd,helm,prometheus,kueue}/go.mod pin the components; the launcher's
constants name the same versions (its cache directory is keyed by the Kubernetes one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mig_spawner.demo.controlplane import launcher

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import staging  # noqa: E402


def pinned(module_dir: str, module: str) -> str:
    text = (HERE / module_dir / "go.mod").read_text()
    (version,) = re.findall(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    return version


def test_the_launcher_names_the_pinned_versions(monkeypatch, tmp_path):
    assert pinned("kubernetes", "k8s.io/kubernetes") == launcher.K8S_VERSION
    assert pinned("etcd", "go.etcd.io/etcd/server/v3") == launcher.ETCD_VERSION
    assert pinned("helm", "helm.sh/helm/v3") == launcher.HELM_VERSION
    assert pinned("prometheus", "github.com/prometheus/prometheus") == launcher.PROMETHEUS_VERSION
    assert pinned("kueue", "sigs.k8s.io/kueue") == launcher.KUEUE_VERSION
    # the default cache is keyed by the version; MIG_SPAWNER_K8S_CACHE names another
    monkeypatch.delenv("MIG_SPAWNER_K8S_CACHE", raising=False)
    assert launcher.cache_dir().name == f"k8s-{launcher.K8S_VERSION}"
    monkeypatch.setenv("MIG_SPAWNER_K8S_CACHE", str(tmp_path))
    assert launcher.cache_dir() == tmp_path
    assert launcher.prometheus_binary() == tmp_path / "prometheus"  # beside the control plane
    assert launcher.kueue_binary() == tmp_path / "kueue"
    assert re.fullmatch(r"v1\.37\.\d+", launcher.K8S_VERSION)
    assert re.fullmatch(r"v3\.6\.\d+", launcher.ETCD_VERSION)
    assert re.fullmatch(r"v3\.2\d\.\d+", launcher.HELM_VERSION)
    assert re.fullmatch(r"v0\.3\d\d\.\d+", launcher.PROMETHEUS_VERSION)  # Prometheus 3.x
    assert re.fullmatch(r"v0\.1\d\.\d+", launcher.KUEUE_VERSION)


def test_the_build_script_builds_every_pinned_module_by_default():
    """Each go.mod beside build.sh is built by its default list (the selftest aside);
    Prometheus's and Kueue's name their command with a ``tool`` line, as helm's does."""
    script = (HERE / "build.sh").read_text()
    (default,) = re.findall(r"MIG_SPAWNER_BUILD_ONLY:-([\w ]+)\}", script)
    modules = {p.parent.name for p in HERE.glob("*/go.mod")} - {"selftest"}
    assert set(default.split()) == modules and {"prometheus", "kueue"} <= modules
    tool = re.findall(r"^tool (\S+)$", (HERE / "prometheus" / "go.mod").read_text(), re.M)
    assert tool == ["github.com/prometheus/prometheus/cmd/prometheus"]
    tool = re.findall(r"^tool (\S+)$", (HERE / "kueue" / "go.mod").read_text(), re.M)
    assert tool == ["sigs.k8s.io/kueue/cmd/kueue"]


UPSTREAM = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/api => ./staging/src/k8s.io/api
\tgithub.com/other/thing => github.com/fork/thing v1.2.3
)
"""


def test_the_replace_block_is_derived_from_the_upstream_go_mod():
    ours = "module x\n\nrequire k8s.io/kubernetes v1.37.9\n"
    rendered = staging.render(ours, UPSTREAM)
    assert staging.replaces(rendered) == [
        ("k8s.io/api", "k8s.io/api", "v0.37.9"),
        ("k8s.io/client-go", "k8s.io/client-go", "v0.37.9"),
    ]
    assert staging.render(rendered, UPSTREAM) == rendered  # idempotent
    # a hand edit (or a Kubernetes bump without regenerating) is caught
    stale = rendered.replace("k8s.io/api v0.37.9", "k8s.io/api v0.37.8")
    assert staging.replaces(stale) != staging.replaces(staging.render(stale, UPSTREAM))


def test_the_committed_replace_block_matches_the_pinned_kubernetes():
    """Every staging module upstream replaces with ./staging/src is replaced here, at v0.X.Y."""
    if not shutil.which("go"):
        pytest.skip("go is not installed")
    result = subprocess.run(
        [sys.executable, str(HERE / "staging.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    got = staging.replaces((HERE / "kubernetes" / "go.mod").read_text())
    assert len(got) > 20 and {v for _, _, v in got} == {"v0." + launcher.K8S_VERSION[3:]}
