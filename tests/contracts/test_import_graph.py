"""skebm's modules import one way: no cycle, not even through imports inside
functions, which would hide one (``estimator`` and ``persistence`` once had it)."""

import ast
from pathlib import Path

import skebm

PACKAGE = Path(skebm.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imported(module: str, path: Path, node, modules) -> set[str]:
    """The skebm modules one import statement names (``from a import b`` names
    ``a.b`` when that is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
        return _with_packages(names, module) & set(modules)
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    found = set()
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        found.add(submodule if submodule in modules else base)
    return _with_packages(found, module) & set(modules)


def _with_packages(names: set[str], importer: str) -> set[str]:
    """``names`` plus the packages Python runs first to import them (``a.b.c``
    runs ``a/b/__init__.py``), except those already running: the root package and
    the importer's own packages."""
    parents = {
        ".".join(n.split(".")[:i]) for n in names for i in range(2, n.count(".") + 1)
    }
    running = {
        ".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)
    }
    return names | (parents - running)


def import_graph() -> dict[str, set[str]]:
    modules = _module_names()
    graph = {}
    for module, path in modules.items():
        statements = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        graph[module] = set().union(
            *(
                _imported(module, path, node, modules)
                for node in statements
                if isinstance(node, ast.Import | ast.ImportFrom)
            )
        ) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node):
        state[node], path[len(path) :] = "open", [node]
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_function_level_relative_and_package_imports():
    graph = import_graph()
    # skebm.losses._base imports skebm.energies.residual, which runs energies/__init__
    assert "skebm.energies" in graph["skebm.losses._base"]
    assert "skebm.estimator" in graph["skebm.persistence"]
    assert "skebm._model_file" in graph["skebm.estimator"]
    assert len(graph) > 30


def test_skebm_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def _private_imports(source: str) -> list[str]:
    """``skebm`` names imported by ``source`` with a private part (``_x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skebm"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("skebm")]
        else:
            continue
        found += [n for n in names if any(p.startswith("_") for p in n.split("."))]
    return found


def test_the_private_import_finder_finds_them():
    source = "from skebm.utils._torch import x\nfrom skebm.samplers import _y\n"
    assert _private_imports(source) == ["skebm.utils._torch.x", "skebm.samplers._y"]
    assert _private_imports("from skebm.samplers import BaseSampler") == []


def test_the_plugins_and_the_readme_import_only_public_names():
    """Plugin authors copy these: they must build on skebm's public surface."""
    root = PACKAGE.parent
    sources = {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for path in (root / "plugins").rglob("src/**/*.py")
    }
    for page in [root / "README.md", *(root / "docs").glob("*.md")]:
        blocks = page.read_text(encoding="utf-8").split("```python\n")[1:]
        sources |= {
            f"{page.name} block {i}": b.split("```")[0] for i, b in enumerate(blocks)
        }
    assert sum(name.startswith("plugins") for name in sources) >= 6
    private = {name: _private_imports(text) for name, text in sources.items()}
    assert not {name: found for name, found in private.items() if found}
