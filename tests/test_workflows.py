"""The workflows layer: each verb a script of short named steps, and ``transferkit.api`` a list of re-exports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import transferkit

SRC = Path(transferkit.__file__).parent
MAX_LINES = 80


def _functions(path: Path) -> list[tuple[str, int]]:
    """(name, line count) of every function and method in ``path``, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _workflow_files() -> list[Path]:
    return [*sorted((SRC / "workflows").glob("*.py")), SRC / "api.py"]


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_no_function_over_80_lines(path: Path) -> None:
    too_long = [f"{name} ({lines} lines)" for name, lines in _functions(path) if lines > MAX_LINES]
    assert not too_long, f"{path.relative_to(SRC)}: split into named steps: {', '.join(too_long)}"


def test_line_count_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n", encoding="utf-8")
    assert dict(_functions(path)) == {"long": MAX_LINES + 1, "short": 2}


def test_api_only_reexports() -> None:
    tree = ast.parse((SRC / "api.py").read_text(encoding="utf-8"))
    body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) else tree.body  # the docstring
    kinds = {type(node).__name__ for node in body}
    assert kinds <= {"ImportFrom", "Import", "Assign"}, f"api.py holds more than imports and __all__: {kinds}"
    assigned = [target.id for node in body if isinstance(node, ast.Assign) for target in node.targets]
    assert assigned == ["__all__"]


def test_api_names_are_the_workflow_functions() -> None:
    from transferkit import api
    from transferkit.workflows import evaluate, fit, predict

    assert api.fit is fit.fit and transferkit.fit is fit.fit
    assert api.evaluate is evaluate.evaluate and transferkit.evaluate is evaluate.evaluate
    assert api.predict is predict.predict and transferkit.predict is predict.predict
    assert transferkit.FitResult is fit.FitResult
    assert set(api.__all__) <= set(vars(api))
