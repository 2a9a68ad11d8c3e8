"""The import rules of docs/architecture.md: layers in gear_core, no LlamaIndex in gear_core, no torch in the
adapters, and serving that loads no training or evaluation dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# docs/architecture.md's layers, by module or subpackage.
LAYERS = {
    "gear_core.config": 0,
    "gear_core.scoring": 0,
    "gear_core.losses": 0,
    "gear_core.text": 0,
    "gear_core.evidence": 0,
    "gear_core.decoding": 0,
    "gear_core.span_reader": 0,
    "gear_core.files": 0,
    "gear_core.allocator": 0,
    "gear_core.folders": 0,
    "gear_core.tokenization": 0,
    "gear_core.layers": 0,
    "gear_core.quantization": 0,
    "gear_core.ranking": 1,
    "gear_core.generation": 1,
    "gear_core.serving": 1,
    "gear_core.pretrained": 1,
    "gear_core.modeling": 1,
    "gear_core.momentum": 1,
    "gear_core.loading": 1,
    "gear_core": 0,  # __init__.py: DEFAULT_MODEL and the public names, loaded on first use
    "gear_core.data": 2,
    "gear_core.retrieval": 2,
    "gear_core.evaluation": 3,
    "gear_core.training": 4,
    "gear_core.demo": 5,
    "gear_core.cli": 6,
}


def unit(module: str) -> str:
    """The row of LAYERS a module belongs to: ``gear_core.data.squad`` -> ``gear_core.data``."""
    name = ".".join(module.split(".")[:2])
    if name not in LAYERS:
        raise AssertionError(f"{module} has no layer in docs/architecture.md")
    return name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> list[str]:
    """Every module an import statement names (at any depth, lazy ones too), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for child in ast.walk(statement)
    }
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def allowed(source: str, target: str) -> bool:
    source_unit, target_unit = unit(source), unit(target)
    source_layer, target_layer = LAYERS[source_unit], LAYERS[target_unit]
    if target_layer < source_layer:
        return True
    return target_layer == source_layer and (source_layer <= 1 or source_unit == target_unit)


def test_gear_core_imports_follow_the_layers():
    broken = [
        f"{module_name(path)} imports {name}"
        for path in package_files("gear_core")
        for name in runtime_imports(path)
        if name.split(".")[0] == "gear_core" and not allowed(module_name(path), name)
    ]
    assert not broken, "imports across the layers of docs/architecture.md:\n" + "\n".join(broken)


def test_gear_core_never_imports_llama_index_and_the_adapters_never_import_torch():
    broken = [
        f"{module_name(path)} imports {name}"
        for path in package_files("gear_core")
        for name in runtime_imports(path)
        if name.split(".")[0] in ("llama_index", "llama_index_gear")
    ]
    for path in package_files("llama_index_gear"):
        for name in runtime_imports(path):
            top = name.split(".")[0]
            if top in ("torch", "numpy") or (top == "gear_core" and LAYERS[unit(name)] > 2):
                broken.append(f"{module_name(path)} imports {name}")
    assert not broken, "\n".join(broken)


def test_the_rules_catch_a_bad_import():
    assert not allowed("gear_core.modeling", "gear_core.training.module")
    assert not allowed("gear_core.data.squad", "gear_core.retrieval.index")
    assert allowed("gear_core.training.module", "gear_core.evaluation.metrics")
    assert allowed("gear_core.momentum", "gear_core.modeling")
    with pytest.raises(AssertionError, match="no layer"):
        unit("gear_core.newmodule")


def test_serving_loads_no_training_evaluation_or_llama_index_code():
    code = (
        "import sys\n"
        "from gear_core import GeARModel, split_sentences\n"
        "from gear_core.loading import load_model\n"
        "from gear_core.retrieval import GeARSearcher\n"
        "from gear_core.evidence import ground_evidence\n"
        "split_sentences('One sentence. Another one.')\n"
        "heavy = ('lightning', 'jsonargparse', 'datasets', 'bm25s', 'Stemmer', 'llama_index.core')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


def test_gear_core_has_no_import_cycles():
    """No module of gear_core imports, at any depth and lazily or not, one that imports it back (TYPE_CHECKING
    imports aside): each module can be read, and loaded, on its own."""
    modules = {module_name(path): path for path in package_files("gear_core")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in runtime_imports(path):
            if name.split(".")[0] == "gear_core" and (target := resolve(name)) not in (None, module, "gear_core"):
                targets.add(target)
        graph[module] = targets

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for target in graph[node]:
                if target == start:
                    return [*trail, start]
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*trail, target]))
        return None

    cycles = [cycle for module in graph if (cycle := cycle_from(module))]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
