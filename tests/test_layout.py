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
