"""helm-values/image: the hub image is the chart's own image plus this package, nothing else."""

from __future__ import annotations

import fnmatch
import re

import tomllib
from z2jh_values import BASE_VALUES, CHART_VERSION, HELM_VALUES, ROOT, load_yaml

DOCKERFILE = HELM_VALUES / "image" / "Dockerfile"
DOCKERIGNORE = HELM_VALUES / "image" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copied_sources() -> list[str]:
    return [src for op, args in instructions() if op == "COPY" for src in args.split()[:-1]]


def in_build_context(path: str) -> bool:
    """Whether Dockerfile.dockerignore lets `path` into the build context (last match wins)."""
    included = True
    for pattern in DOCKERIGNORE.read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
            included = negate
    return included


def test_hub_image_tag_is_package_version_dash_chart_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = load_yaml(BASE_VALUES)["hub"]["image"]
    assert image["tag"] == f"{version}-{CHART_VERSION}"
    assert [args for op, args in instructions() if op == "FROM"] == [
        f"quay.io/jupyterhub/k8s-hub:{CHART_VERSION}"
    ]
    # The documented build command produces the image the values file deploys, in the
    # operator's own registry: the project publishes no image, so none is named as if it did.
    registry, _, repo = image["name"].rpartition("/")
    assert registry == "registry.example.org/your-team" and repo == "k8s-hub-mig"
    build = f'docker build -f helm-values/image/Dockerfile -t "$REGISTRY/{repo}:{image["tag"]}" .'
    assert build in DOCKERFILE.read_text()
    assert build in (ROOT / "docs" / "deploy-z2jh.md").read_text()


def test_installs_as_root_then_returns_to_the_charts_user():
    ops = instructions()
    users = [(i, args) for i, (op, args) in enumerate(ops) if op == "USER"]
    assert users[0][1] == "root"
    last_index, last_user = users[-1]
    assert last_user == "${NB_USER}"
    # NB_USER is re-declared (build ARGs do not carry over FROM) as the chart's user, jovyan.
    args = [a for op, a in ops[:last_index] if op == "ARG" and a.startswith("NB_USER")]
    assert args == ["NB_USER=jovyan"]
    installs = [i for i, (op, args) in enumerate(ops) if op == "RUN" and "pip install" in args]
    assert installs and all(users[0][0] < i < last_index for i in installs)
    for i in installs:
        assert "--no-cache-dir" in ops[i][1]
        assert "--constraint" in ops[i][1]  # never changes the chart's own packages


def test_copied_sources_are_in_the_build_context():
    sources = copied_sources()
    assert {"pyproject.toml", "mig_spawner"} <= set(sources)
    for src in sources:
        assert in_build_context(src), src
    for junk in (".venv", ".git", "tests", "mig_spawner/__pycache__"):
        assert not in_build_context(junk), junk


def test_copied_sources_exist_in_the_repository():
    for src in copied_sources():
        assert (ROOT / src).exists(), f"docker build would fail: {src} is missing"
