"""The import graph of every module of `oss_net` and `pade_activation_unit`, read from the source with `ast`.

Every import counts, those inside functions included; relative imports are resolved, and
`from package import name` is an import of the submodule `package.name` when such a module exists
(else of `package` itself); names loaded through `importlib` (pade_activation_unit's lazy public names)
are not seen. The graph must have no cycle, `oss_net.models` and `oss_net.metrics` stand alone (no
`oss_net.data` module), and `pade_activation_unit` imports nothing of `oss_net`.

    python tests/test_import_graph.py          # the import-graph section of docs/architecture.md, from the code
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("oss_net", "pade_activation_unit")


def module_files(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file of `packages` (a package is its __init__.py)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its file (functions included)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module name: its closest module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = module_files(root, packages)
    known = set(files)
    return {module: imported_modules(module, path, known) for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [m0, m1, ..., m0], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def within(graph: dict[str, set[str]], prefix: str) -> dict[str, set[str]]:
    """The subgraph of the modules under `prefix` (edges to other modules dropped)."""
    inside = {m for m in graph if m == prefix or m.startswith(prefix + ".")}
    return {m: graph[m] & inside for m in inside}


def without(graph: dict[str, set[str]], prefix: str) -> dict[str, set[str]]:
    """The graph without the modules under `prefix`."""
    outside = {m for m in graph if not (m == prefix or m.startswith(prefix + "."))}
    return {m: graph[m] & outside for m in outside}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_graph_sees_relative_and_function_level_imports(tmp_path):
    package = tmp_path / "oss_net"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from . import leaf\n")
    (package / "leaf.py").write_text("def f():\n    from oss_net.sub import inner\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "inner.py").write_text("from ..leaf import f\nimport oss_net.sub\n")
    (tmp_path / "pade_activation_unit").mkdir()
    found = import_graph(tmp_path)
    assert found == {"oss_net": {"oss_net.leaf"}, "oss_net.leaf": {"oss_net.sub.inner"}, "oss_net.sub": set(),
                     "oss_net.sub.inner": {"oss_net.leaf", "oss_net.sub"}}
    assert find_cycle(found) == ["oss_net.leaf", "oss_net.sub.inner", "oss_net.leaf"]


def test_no_import_cycle_outside_inference(graph):
    cycle = find_cycle(without(graph, "oss_net.inference"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_in_inference(graph):
    cycle = find_cycle(within(graph, "oss_net.inference")) or find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("package", ["oss_net.models", "oss_net.metrics"])
def test_models_and_metrics_import_no_data_module(graph, package):
    offending = sorted(f"{m} -> {t}" for m in within(graph, package)
                       for t in graph[m] if t == "oss_net.data" or t.startswith("oss_net.data."))
    assert not offending, f"{package} imports oss_net.data: {offending}"


def test_importing_models_and_metrics_loads_no_data_module():
    """At run time too (lazy and dynamic imports included): `import oss_net.models, oss_net.metrics` in a fresh
    interpreter leaves no `oss_net.data` module in sys.modules."""
    probe = ("import sys, oss_net.models, oss_net.metrics; "
             "print(sorted(m for m in sys.modules if m == 'oss_net.data' or m.startswith('oss_net.data.')))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_data_imports_no_package_above_it(graph):
    above = ("oss_net.models", "oss_net.metrics", "oss_net.meshing", "oss_net.inference", "oss_net.training")
    offending = sorted(f"{m} -> {t}" for m in within(graph, "oss_net.data")
                       for t in graph[m] if t.startswith(above))
    assert not offending, offending


@pytest.mark.parametrize("leaf", ["oss_net.io", "oss_net.datasets", "oss_net.geometry", "oss_net.labels"])
def test_shared_leaf_modules_import_no_package(graph, leaf):
    packages = {m.rsplit(".", 1)[0] for m in graph if m.count(".") >= 2} | {"pade_activation_unit"}
    offending = sorted(t for t in graph[leaf] if t in packages or t.rsplit(".", 1)[0] in packages)
    assert not offending, f"{leaf} imports {offending}"


def test_pade_activation_unit_imports_nothing_of_oss_net(graph):
    offending = sorted(f"{m} -> {t}" for m in within(graph, "pade_activation_unit")
                       for t in graph[m] if t.startswith("oss_net"))
    assert not offending, offending


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Module -> its layer: 0 for a module importing nothing of the project, else 1 + the highest layer it imports."""
    found: dict[str, int] = {}

    def layer(module: str) -> int:
        if module not in found:
            found[module] = 0  # a module on a cycle counts its way back as layer 0 (find_cycle reports the cycle)
            found[module] = 1 + max((layer(target) for target in graph[module]), default=-1)
        return found[module]

    for module in graph:
        layer(module)
    return found


def markdown(graph: dict[str, set[str]]) -> str:
    """The modules layer by layer, each with the project modules it imports (`oss_net.` left out)."""
    def short(name: str) -> str:
        return name.removeprefix("oss_net.")

    depth = layers(graph)
    rows = ["| layer | module | imports |", "|---|---|---|"]
    for module in sorted(graph, key=lambda m: (depth[m], m)):
        rows.append(f"| {depth[module]} | `{short(module)}` | {', '.join(short(t) for t in sorted(graph[module])) or '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    everything = import_graph(packages=(*PACKAGES, "benchmarks"))
    cycle = find_cycle(everything)
    print(markdown(everything))
    print(f"\ncycle: {' -> '.join(cycle) if cycle else 'none'}", file=sys.stderr)
