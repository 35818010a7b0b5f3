"""The package layers of docs/architecture.md: no speechvq module imports from a layer above its own.

Every import of a ``speechvq`` module counts, at the top of a file or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speechvq"

# Layer of each top-level module or package of speechvq (docs/architecture.md, "Package layers").
LAYERS = {
    "errors": 0,
    "fileio": 1, "config": 1,
    "audio": 2, "checkpoint": 2,
    "f0": 3,
    "modules": 4, "quantization": 4,
    "models": 5, "data": 5,
    "inference": 6, "training": 6,
    "analysis": 7,
    "cli": 8,
    "__init__": 9, "__main__": 9,
}
# Imports between two units that the layers alone would allow but the document rules out.
FORBIDDEN = {("data", "modules"), ("data", "quantization"), ("analysis", "training")}


def _unit(module: str) -> str:
    """speechvq.models.vqvae -> models; speechvq -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def speechvq_imports() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, file:line) for every import of a speechvq module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        unit = _unit(module.removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "speechvq":
                names = [node.module] if node.module != "speechvq" else [f"speechvq.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == "speechvq"]
            else:
                continue
            for name in names:
                imported = _unit(name)
                if imported != unit and imported != "__version__":
                    found.append((unit, imported, f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"))
    return found


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))}
    assert units - set(LAYERS) == set(), "add the new module to LAYERS and to docs/architecture.md"


def test_no_upward_or_sideways_imports():
    wrong = [f"{where}: {unit} (layer {LAYERS[unit]}) imports {imported} (layer {LAYERS[imported]})"
             for unit, imported, where in speechvq_imports()
             if LAYERS[imported] >= LAYERS[unit] or (unit, imported) in FORBIDDEN]
    assert not wrong, "\n".join(wrong)


def test_the_scan_sees_lazy_imports():
    imports = {(unit, imported) for unit, imported, _ in speechvq_imports()}
    assert ("__init__", "inference") in imports  # speechvq.load imports the pipeline inside the function
    assert ("cli", "training") in imports
