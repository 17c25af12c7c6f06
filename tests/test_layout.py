"""The package's folders are its architecture: each folder's name tells what it may import.

- ``core``  imports no other folder (its purity is checked in ``tests/core``);
- ``hub``   imports ``core``, never ``cli`` or ``demo`` (a production hub ships no demo);
- ``cli``   imports ``core`` and ``hub`` facts, and ``demo`` only inside a function;
- ``demo``  may import anything; nothing outside it imports it at module level.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mig_spawner"
FOLDERS = ("core", "hub", "cli", "demo")
MAY_IMPORT = {
    "core": set(),
    "hub": {"core"},
    "cli": {"core", "hub"},
    "demo": {"core", "hub", "cli"},
}


def _imports(path: Path, source: str | None = None):
    """(folder imported, line, at module level?) for every import of another package folder."""
    folder = path.relative_to(PKG).parts[0]
    tree = ast.parse(path.read_text() if source is None else source)
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom | ast.Import):
            continue
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif node.level == 0:
            mods = [node.module or ""]
        else:
            # Resolve a relative import against the file's package.
            base = list(path.relative_to(PKG).parent.parts)
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = [*base, *(node.module.split(".") if node.module else [])]
            if not target:  # from .. import x (the package root): x names the folder
                target = [node.names[0].name]
            mods = ["mig_spawner." + ".".join(target)]
        for mod in mods:
            parts = mod.split(".")
            if parts[0] == "mig_spawner" and len(parts) > 1 and parts[1] in FOLDERS:
                if parts[1] == folder:
                    continue
                yield parts[1], node.lineno, id(node) in top_level


def _package_files():
    return sorted(p for f in FOLDERS for p in (PKG / f).rglob("*.py"))


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_a_module_imports_only_what_its_folder_may(path):
    folder = path.relative_to(PKG).parts[0]
    bad = []
    for target, line, top in _imports(path):
        lazy_demo_from_cli = folder == "cli" and target == "demo" and not top
        if target not in MAY_IMPORT[folder] and not lazy_demo_from_cli:
            bad.append(f"line {line}: imports {target}")
    assert bad == []


def test_the_rule_sees_every_way_of_writing_an_import():
    """Relative, absolute and lazy imports all resolve to the folder they name."""
    hub_file = PKG / "hub" / "spawner.py"
    src = (
        "from ..demo.emulator import EmulatedCluster\n"
        "import mig_spawner.cli.main\n"
        "from .. import core\n"
        "from .watch import ClusterView\n"
        "def f():\n"
        "    from mig_spawner.demo import command\n"
    )
    assert list(_imports(hub_file, src)) == [
        ("demo", 1, True),
        ("cli", 2, True),
        ("core", 3, True),
        ("demo", 6, False),
    ]


def test_no_module_outside_the_folders_but_the_package_root():
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert loose == []


MAX_LINES = 500


def test_every_module_is_small():
    """Modules under 500 lines, named for what they hold (the design rule)."""
    big = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) >= MAX_LINES
    }
    assert big == {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports: every import, at module level or in a
    function, under ``TYPE_CHECKING`` or not (a circle of types is still a circle)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - (node.level - 1)]
                    base = ".".join([*up, *([base] if base else [])])
                # "from pkg import mod" names a module; "from mod import name" does not
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                    break  # the longest module the import names
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_of_the_package_has_no_circle():
    graph = _import_graph()
    assert len(graph) > 50 and graph["mig_spawner.core.admission"] >= {
        "mig_spawner.core.messages",
        "mig_spawner.core.cluster",
    }
    assert _cycles(graph) == []


def test_the_circle_check_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# ------------------------------------------------------------------------ the test tree
# The test tree mirrors the package: ``tests/<folder>/test_<module>.py`` (or
# ``test_<module>_<aspect>.py`` when one module has several files) for every module of
# mig_spawner/core, hub and cli. The planes that cut across modules have folders of their
# own: tests/controlplane (the real control plane), tests/z2jh and tests/deploy (the Z2JH
# chart), tests/browser, tests/dropin (KubeSpawner's suite), tests/conformance (API
# conformance), tests/docs; tests/demo mirrors mig_spawner/demo (tests/demo/emulator).

TESTS = Path(__file__).resolve().parent
MIRRORED = ("core", "hub", "cli")

#: Modules tested only through others' files, and why. Keep it short: a module that gets a
#: file of its own leaves this list (the test below says so).
TESTED_THROUGH_OTHERS = {
    # a decision's candidate record: made by admission, worded by messages
    "core.candidates": "test_admission.py, test_messages.py",
    # fallback chains are what decide() walks: their order, steps and adequacy are checked
    # there, and against a reference scan
    "core.chains": "test_admission.py, test_admission_properties.py, test_index.py",
    # quoting user input back: through forged options and the messages that quote them
    "core.echo": "test_options.py, test_messages.py",
    # the per-version caches of the modules that derive values (form, chains, admission)
    "core.memo": "test_form.py, test_index.py",
    # quota arithmetic: admission's refusals, and check_quota against a reference
    "core.quota": "test_admission.py, test_index.py",
    # the usage book the cluster cache keeps: per scope, and equal to one rebuilt
    "core.usage": "test_cluster.py, test_cluster_properties.py",
    # the admin page: one real hub run checks /hub/metrics, the log line and the page
    "hub.adminpage": "test_metrics_adminpage.py",
    # policy settings as a hub holds them: the hub's start check and the CLI's --config
    "hub.config": "test_service_start_check.py, tests/cli/test_hubconfig.py",
    # refusal status codes and JupyterHub's failure count: through a real hub
    "hub.refusals": "test_spawner.py, test_hubcompat.py",
    # what `advise` prints (table, commands, SVG plot)
    "cli.advise_report": "test_advise.py",
    # file:line:column of a bad value: through the commands that read YAML
    "cli.locate": "test_hubconfig.py, tests/demo/emulator/test_clusterfile.py",
}


def _modules(folder: str) -> set[str]:
    return {p.stem for p in (PKG / folder).glob("*.py") if p.name != "__init__.py"}


def _tested_module(stem: str, modules: set[str]) -> str | None:
    """The module a test file is named for: the longest ``m`` with ``stem`` ==
    ``test_m`` or ``test_m_<aspect>`` (test_advise_apply.py is advise_apply's, not advise's)."""
    named = [m for m in modules if stem == f"test_{m}" or stem.startswith(f"test_{m}_")]
    return max(named, key=len, default=None)


def _untested(folder: str, test_stems: set[str]) -> set[str]:
    modules = _modules(folder)
    tested = {_tested_module(stem, modules) for stem in test_stems}
    return {f"{folder}.{m}" for m in modules if m not in tested}


@pytest.mark.parametrize("folder", MIRRORED)
def test_every_module_has_a_test_file_named_for_it(folder):
    stems = {p.stem for p in (TESTS / folder).glob("test_*.py")}
    untested = _untested(folder, stems)
    allowed = {m for m in TESTED_THROUGH_OTHERS if m.startswith(f"{folder}.")}
    assert untested - allowed == set(), f"add tests/{folder}/test_<module>.py"
    assert allowed - untested == set(), "has a test file now: remove it from the allow-list"


def test_the_mirror_rule_names_a_file_for_its_longest_module():
    modules = {"advise", "advise_apply", "spawner", "placing"}
    assert _tested_module("test_advise_apply", modules) == "advise_apply"
    assert _tested_module("test_advise", modules) == "advise"
    assert _tested_module("test_spawner_trust", modules) == "spawner"
    assert _tested_module("test_placingx", modules) is None
    assert _tested_module("test_core_fixes", modules) is None
    # a module with only another module's aspect files is untested
    assert _untested("cli", {"test_advise_apply"}) >= {"cli.advise"}


def test_test_file_names_are_unique_across_the_tree():
    """pytest imports test files by base name (rootdir ``prepend`` mode, no __init__.py):
    two ``test_x.py`` in different folders would collide, so a name is the mirror's
    ``test_<module>`` only once -- use an aspect (``test_<module>_<aspect>.py``)."""
    seen: dict[str, list[str]] = {}
    for path in TESTS.rglob("*.py"):
        if path.name != "conftest.py" and "__pycache__" not in path.parts:
            seen.setdefault(path.name, []).append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
