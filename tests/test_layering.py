"""Import boundaries (DESIGN.md "Layout"): engine imports neither Qt nor training/studio; training imports no Qt
and no studio. Checked statically over every module, and dynamically for the entry points."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "qtpy")
FORBIDDEN = {
    "engine": QT + ("training", "studio"),
    "training": QT + ("studio",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module a source file imports: import/from statements anywhere (also inside functions), relative
    imports resolved against `module`, and importlib.import_module / __import__ calls with a literal name."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                found.add(node.args[0].value)
    return found


def _violations(package: str) -> list[str]:
    bad = []
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    for path in files:
        module = _module_name(path)
        for name in imported_modules(path.read_text(), module, path.name == "__init__.py"):
            top = name.split(".")[0]
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_import_boundary(package):
    assert _violations(package) == []


def test_studio_reaches_training_only_through_runs():
    """DESIGN.md: the studio imports `training.runs` (listing, default configs), never the trainers themselves."""
    bad = [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "studio").rglob("*.py"))
           for name in imported_modules(path.read_text(), _module_name(path), path.name == "__init__.py")
           if name.split(".")[0] == "training" and not name.startswith("training.runs")]
    assert bad == []


def test_the_scanner_sees_imports():
    """The scanner is not vacuous: it finds real imports of the project and every forbidden form."""
    engine_config = imported_modules((ROOT / "engine/config.py").read_text(), "engine.config")
    assert "engine.io" in engine_config
    writer = imported_modules((ROOT / "training/synth/writer.py").read_text(), "training.synth.writer")
    assert "training.synth.scene" in writer  # a lazy import inside a function
    source = textwrap.dedent("""
        import PySide6.QtCore
        from pyqtgraph import PlotWidget
        def later():
            from ..studio import app
            from . import sibling
            import importlib
            importlib.import_module("training.runs")
            __import__("PyQt6")
    """)
    found = imported_modules(source, "engine.render.gl")
    assert {"PySide6.QtCore", "pyqtgraph", "engine.studio", "engine.render", "training.runs", "PyQt6"} <= found
    found = imported_modules("from ...studio import x", "training.cli.main")
    assert "studio" in found and "studio.x" in found


def test_entry_points_load_no_qt():
    code = ("import engine.cameras, engine.config, training.cli.main, training.synth.writer, sys; "
            "training.cli.main.build_parser(); "  # imports every verb module
            "bad = sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'PyQt', 'studio'))); "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
