"""Count the bad-input and messy-data cases the test suite tries, per verb (the README's reliability table).

A case is one collected test (each parameter set counts once) in the reliability test files; it counts for a verb
when its test function calls that verb, or its parameters name the verb: the command (``"fit"`` as a CLI argument, ``_cli("fit"``), the Python
function (``tk.fit(``, ``fit(``), or the service (a ``Server`` or a request to ``/predict``). Run from the
project root:

    .venv/bin/python tests/scripts/reliability_cases.py [--junit results.xml]

With ``--junit`` (a file from ``pytest --junitxml``), each verb's row also says how many of its cases passed.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

FILES = ["test_bad_inputs.py", "test_messy_data.py", "test_messy_every_verb.py", "test_outputs.py",
         "test_training_safety.py", "test_serving.py", "test_fuzz_inputs.py", "test_crash_safety.py",
         "test_verb_mistakes.py"]
VERBS = ["fit", "evaluate", "predict", "rank", "cv", "tune", "adapt", "distill", "compress", "multitask", "fuse",
         "export", "report", "serve"]
#: Python names of each verb besides its own (``cross_validate`` is ``cv``, ``tk.load_model`` reads what predict reads).
ALIASES = {"cv": ["cross_validate"], "serve": ["Server", "/predict", "create_app"], "export": ["export_onnx"],
           "report": ["write_report"], "compress": ["compress_model"]}


def verbs_in(source: str) -> set[str]:
    found = set()
    for verb in VERBS:
        patterns = [rf'"{verb}"', rf"\b{verb}\(", *[re.escape(alias) for alias in ALIASES.get(verb, [])]]
        if any(re.search(pattern, source) for pattern in patterns):
            found.add(verb)
    return found


def test_sources(root: Path) -> dict[str, set[str]]:
    """``file::function`` -> the verbs its source calls."""
    out = {}
    for name in FILES:
        path = root / name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                out[f"{name}::{node.name}"] = verbs_in(ast.get_source_segment(path.read_text(encoding="utf-8"), node))
    return out


def collected(root: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *[str(root / f) for f in FILES]],
                          capture_output=True, text=True, cwd=root.parent)
    return [line.split("tests/", 1)[-1] for line in proc.stdout.splitlines() if "::" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit", type=Path, help="pytest --junitxml file of a run over these tests")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    sources = test_sources(root)
    outcomes: dict[str, bool] = {}
    if args.junit:
        for case in ET.parse(args.junit).getroot().iter("testcase"):
            file = case.get("classname", "").rsplit(".", 1)[-1] + ".py"
            failed = any(child.tag in ("failure", "error") for child in case)
            outcomes[f"{file}::{case.get('name')}"] = not failed
    cases: dict[str, list[str]] = defaultdict(list)
    for node in collected(root):
        function, _, params = node.partition("[")
        in_params = {verb for verb in VERBS if verb in re.split(r"[^a-z]+", params.lower())}
        for verb in sources.get(function, set()) | in_params:
            cases[verb].append(node)
    print("| verb | cases tried | passed |")
    print("|---|---:|---:|")
    for verb in VERBS:
        nodes = cases.get(verb, [])
        passed = sum(outcomes.get(n, False) for n in nodes) if outcomes else "-"
        print(f"| `{verb}` | {len(nodes)} | {passed} |")
    total = len({n for nodes in cases.values() for n in nodes})
    print(f"\n{total} distinct cases in {len(FILES)} files.")


if __name__ == "__main__":
    main()
