"""The package's layout: layers import downwards only, and one module reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "koala_lib"

# color -> data -> model -> train -> evaluate / colorize -> course, with the environment
# (variables, folders) and the small leaf modules at the bottom.
LAYERS = {
    "environment": 0, "files": 0,
    "color": 1, "quantize": 1, "torch_weights": 1, "metrics": 1, "viz": 1,
    "data": 2,
    "model": 3, "losses": 3, "features": 3,
    "train": 4, "trained_model": 4, "precision": 4, "runs": 4, "trainer": 4,
    "evaluate": 5, "colorize": 5, "colorize_video": 5,
    "experiments": 6, "studies": 6, "budget": 6, "verdicts": 6,
    "course": 7, "records": 7,
    "__main__": 8,
}


def _layer(module: str) -> int:
    """'koala_lib.data.prepare' -> the layer of 'data'."""
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def _imports(path: Path) -> set[str]:
    """Every koala_lib module ``path`` imports, at the top or inside functions, relative
    imports (``from .train import x``) resolved."""
    package = _name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if not module.startswith("koala_lib"):
                continue
            names = [f"{module}.{alias.name}" for alias in node.names]
            found.update(name if name.split(".")[1] in LAYERS else module for name in names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("koala_lib."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def _name(path: Path) -> str:
    return ".".join(("koala_lib", *path.relative_to(PACKAGE).with_suffix("").parts))


def test_every_module_has_a_layer():
    assert {_name(path).split(".")[1] for path in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_import_only_from_their_layer_or_below(path):
    here = _layer(_name(path))
    above = {module for module in _imports(path) if _layer(module) > here}
    assert not above, f"{_name(path)} (layer {here}) imports from above: {sorted(above)}"


def test_the_inference_module_never_trains():
    imported = _imports(PACKAGE / "colorize.py")
    assert not {m for m in imported if m == "koala_lib.train" or m.startswith("koala_lib.train.")}


def test_only_the_environment_module_reads_environment_variables():
    readers = [_name(path) for path in MODULES
               if "os.environ" in path.read_text() or "getenv" in path.read_text()]
    assert readers == ["koala_lib.environment"]
