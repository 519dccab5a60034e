"""`transferkit rank` end to end, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TINY_IMAGE_BACKBONE

CLI = [sys.executable, "-m", "transferkit.cli.main"]


def run(*args: str, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_rank_is_listed_and_explains_its_options() -> None:
    assert "rank" in run("--help").stdout
    text = run("rank", "--help").stdout
    for option in ("--candidates", "--scores", "--validate", "--shots", "--json"):
        assert option in text


def test_rank_images_as_json_then_as_a_table_from_the_cache(image_folder: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    proc = run("rank", str(image_folder), "--candidates", f"{TINY_IMAGE_BACKBONE},random:timm:test_resnet",
               "--cache-dir", cache, "--json")
    result = json.loads(proc.stdout)
    names = [row["name"] for row in result["rows"]]
    assert sorted(names) == sorted([TINY_IMAGE_BACKBONE, "random:timm:test_resnet", "raw"])
    logme = [row["scores"]["logme"] for row in result["rows"]]
    assert logme == sorted(logme, reverse=True) and result["sort_by"] == "logme"
    assert all(row["extraction"]["computed"] == 18 for row in result["rows"] if row["kind"] != "raw")
    table = run("rank", str(image_folder), "--candidates", TINY_IMAGE_BACKBONE, "--scores", "nce,logme",
                "--shots", "4", "--cache-dir", cache, "-q").stdout
    lines = table.splitlines()
    assert lines[0].startswith("ranked by NCE on 12 labelled image examples, 3 classes")
    assert "LogME" in lines[1] and "H-score" not in lines[1]
    assert any(line.split()[1:2] == [TINY_IMAGE_BACKBONE] for line in lines[3:5])
    assert "n/a: NCE for raw" in table


def test_rank_user_errors_print_one_line(image_folder: Path, text_csv: Path) -> None:
    cases = [
        ("rank", str(image_folder), "--candidates", TINY_IMAGE_BACKBONE, "--scores", "logme,bogus"),
        ("rank", str(image_folder), "--candidates", "all-MiniLM-L6-v2"),
        ("rank", str(image_folder / "missing")),
        ("rank", str(text_csv), "--candidates", "no-such-model"),
    ]
    for args in cases:
        proc = run(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr


def test_rank_validate_reports_accuracies_and_tau(image_folder: Path, tmp_path: Path) -> None:
    proc = run("rank", str(image_folder), "--candidates", f"{TINY_IMAGE_BACKBONE},random:timm:test_resnet",
               "--scores", "logme", "--validate", "--test-fraction", "0.34", "--cache-dir", str(tmp_path / "c"),
               "--json")
    result = json.loads(proc.stdout)
    assert result["n_scored"] == 12 and result["n_test"] == 6
    assert all(0 <= row["accuracy"]["linear_probe"] <= 1 for row in result["rows"])
    entry = result["correlations"]["logme"]["linear_probe"]
    assert entry["n"] == 3 and set(entry["candidates"]) == {TINY_IMAGE_BACKBONE, "random:timm:test_resnet", "raw"}
    for row in result["rows"]:  # measured, or a reason why not: never silently missing
        assert "finetune" in row["accuracy"] or row["not_run"]["finetune"]

