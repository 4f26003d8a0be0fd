"""Print how the project's packages depend on each other, and any import cycle.

    .venv/bin/python scripts/import_graph.py [PACKAGE ...] [--depth N]

The graph is grimp's (the library under import-linter): every `import` in the source, including
those inside functions and under `if TYPE_CHECKING:`, since each is a dependency a reader has to
follow. A cycle is a set of modules (a package's `__init__` counts as one) that all import each
other through some chain: Python then has to run one of them half-initialised, and none of them
can be understood or tested without the others. `tests/test_architecture.py` asserts there is none;
the import contracts themselves (`lint-imports`) are in `.importlinter`.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("voiceagent", "telephony", "training")


def build_graph(packages=PACKAGES) -> grimp.ImportGraph:
    if str(ROOT) not in sys.path:  # training/ is run from the checkout, not installed
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*packages, cache_dir=None)


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of a directed graph with more than one node (Tarjan's
    algorithm, iterative: an import chain can be deeper than Python's recursion limit likes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(edges.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each set of modules that import each other (a strongly connected component), sorted."""
    return strongly_connected(module_edges(graph))


def describe_cycle(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One import chain round the cycle, with the line of each import, e.g.
    `a.b:12 imports a.c`, `a.c:3 imports a.b`."""
    first = component[0]
    members = set(component)
    nxt = sorted(m for m in graph.find_modules_directly_imported_by(first) if m in members)[0]
    chain = [first, *graph.find_shortest_chain(importer=nxt, imported=first)]
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
    for importer, imported in zip(chain, chain[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ",".join(str(d["line_number"]) for d in details) or "?"
        lines.append(f"  {importer}:{where} imports {imported}")
    return "\n".join(lines)


def package_of(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def package_edges(graph: grimp.ImportGraph, depth: int) -> dict[str, set[str]]:
    """Imports between packages `depth` names deep (telephony.sip, voiceagent.dialog...)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for importer, imported_modules in module_edges(graph).items():
        package = package_of(importer, depth)
        edges[package] |= {package_of(m, depth) for m in imported_modules} - {package}
    return edges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    parser.add_argument("--depth", type=int, default=2, help="names deep a package is (default 2: voiceagent.dialog)")
    args = parser.parse_args(argv)
    graph = build_graph(args.packages)

    edges = package_edges(graph, args.depth)
    print(f"Package dependencies ({', '.join(args.packages)}, {args.depth} names deep):")
    for package in sorted(edges):
        print(f"  {package} -> {', '.join(sorted(edges[package])) or '(nothing)'}")

    package_cycles = strongly_connected(edges)
    print("\nPackage-level cycles:" + ("" if package_cycles else " none"))
    for component in package_cycles:
        print("  between " + ", ".join(component))

    cycles = module_cycles(graph)
    print("\nModule-level import cycles:" + ("" if cycles else " none"))
    for component in cycles:
        print(describe_cycle(graph, component))
    return 1 if cycles or package_cycles else 0


if __name__ == "__main__":
    sys.exit(main())
