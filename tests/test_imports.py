"""The layers of gslb/ import only downward: no import cycles, and nothing imports gslb.service.

Read from the source with `ast`, not by importing: every `import gslb...` / `from gslb... import`
counts wherever it is written - at the top, inside a function, or under `if TYPE_CHECKING:`.
Those last two count on purpose: a function-level import is the usual way a cycle is hidden
rather than removed (it still fails the moment the two modules are loaded in the other order),
and a TYPE_CHECKING import is a dependency the type checker and every reader follow; the cycle
issue 9 found (service <-> api, alerts, metrics, reload, whatif, workers) was made mostly of them.

An edge goes to the module named: `from gslb.geo import GeoDatabase` is an edge to the package
`gslb.geo` (its __init__), `from gslb import service` an edge to `gslb.service`. Importing a
submodule also runs its parents' __init__ files, but those implicit edges are left out: a
package's __init__ re-exporting its own submodules would otherwise look like a cycle with each
of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gslb"

# Cycles being removed on other branches. Each entry is the set of modules of one cycle; the
# lead removes an entry once the branch that breaks it is merged (the test then keeps it gone).
KNOWN_CYCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every gslb module `name` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "gslb" or alias.name.startswith("gslb."):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..dns import y
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == "gslb" or target.startswith("gslb.")):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    found.discard(name)
    return {module for module in found if module in known}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    names = set(found)
    return {name: imports_of(name, path, names) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_path(graph: dict[str, set[str]], component: frozenset[str]) -> str:
    """One cycle through the component, for the failure message: a -> b -> a."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        here = path[-1]
        following = sorted(graph[here] & component)
        if start in following and len(path) > 1:
            return " -> ".join(path + [start])
        unseen = [node for node in following if node not in seen]
        if not unseen:
            return " -> ".join(path + [following[0]])
        path.append(unseen[0])
        seen.add(unseen[0])


def test_the_graph_reader_sees_imports_in_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    graph = import_graph()
    assert "gslb.build" in graph["gslb.reload"]  # a top-level import
    assert "gslb.runtime" in graph["gslb.api.status"]  # under `if TYPE_CHECKING:`
    assert "gslb.service" in graph["gslb.cli"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_gslb_has_no_import_cycles() -> None:
    graph = import_graph()
    unexpected = [component for component in cycles(graph) if component not in KNOWN_CYCLES]
    assert not unexpected, "import cycles in gslb/:\n" + "\n".join(a_path(graph, c) for c in unexpected)


def test_nothing_imports_the_composition_root() -> None:
    """service.py wires and runs; only the command line may start it."""
    importers = sorted(name for name, targets in import_graph().items() if "gslb.service" in targets)
    assert importers == ["gslb.cli"], importers
