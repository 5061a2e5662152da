"""The package's import graph runs downwards only (layers in /work/notes/CONTRACTS.md, docs/internals.md):
a module never imports from a layer above its own, at module level or inside a function."""

import ast
from pathlib import Path

import enhanced_tx

PACKAGE = Path(enhanced_tx.__file__).parent
# lowest first; a module may import its own layer and those below it
LAYERS = [
    {"errors", "runtime", "runfolder", "writable"},
    {"data", "model"},
    {"checkpoint", "tracking", "trusted_targets", "configcheck"},
    {"training", "runs"},  # runs: the run catalog and best-run choice (reads the monitors' directions)
    {"generation"},
    {"evaluation", "sweeps"},
    {"bench"},
    {"tasks", "cli", "launch", "overrides"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """enhanced_tx.training.trainer -> training; enhanced_tx.errors -> errors."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "enhanced_tx"]
            found += [(node.lineno, n) for n in names if n.startswith("enhanced_tx.")]
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: within its own package
            continue
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("enhanced_tx.")]
    return found


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        unit = relative.parts[0].removesuffix(".py")
        if unit in ("__init__", "__main__"):
            continue
        if unit not in LAYER_OF:
            problems.append(f"{relative}: enhanced_tx.{unit} has no layer in tests/test_layers.py LAYERS")
            continue
        for line, module in _imports(path):
            target = _unit(module)
            if target in LAYER_OF and LAYER_OF[target] > LAYER_OF[unit]:
                problems.append(f"{relative}:{line} ({unit}) imports {module} ({target}, a higher layer)")
    return problems


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The parser finds imports inside functions too (the usual way round a layering problem)."""
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from enhanced_tx.training.trainer import Trainer\n")
    assert _imports(source) == [(2, "enhanced_tx.training.trainer")]
