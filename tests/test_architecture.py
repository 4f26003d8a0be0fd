"""The import structure holds: the contracts in `.importlinter` are kept (telephony/ stands alone, the
product imports no training code, sibling packages do not import each other in a cycle) and no
module of the product is part of an import cycle. `scripts/import_graph.py` prints the graph."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _import_graph_script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache", "--no-logo", "--config", str(ROOT / ".importlinter")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "KEPT" in result.stdout, result.stdout + result.stderr  # the contracts were read and checked
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_is_part_of_an_import_cycle():
    import_graph = _import_graph_script()
    graph = import_graph.build_graph(("voiceagent", "telephony"))
    assert "telephony.leg" in graph.modules and "voiceagent.tts" in graph.modules  # packages count as modules
    cycles = import_graph.module_cycles(graph)
    assert not cycles, "\n".join(import_graph.describe_cycle(graph, c) for c in cycles)


def test_the_cycle_finder_finds_cycles_through_a_package_init():
    import grimp

    import_graph = _import_graph_script()
    graph = grimp.ImportGraph()
    for importer, imported in [("shop", "shop.repository"), ("shop.repository", "shop"),
                               ("tts.cache", "tts.voice"), ("tts", "tts.cache"), ("tts.voice", "tts.cache")]:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")
    assert import_graph.module_cycles(graph) == [["shop", "shop.repository"], ["tts.cache", "tts.voice"]]
    assert "shop.repository:1 imports shop" in import_graph.describe_cycle(graph, ["shop", "shop.repository"])
