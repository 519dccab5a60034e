"""``explore``: clusters, duplicates, outliers, label issues, suggested labels, the page and the tables, and the
input it refuses. Tiny backbones and data; the analyses run for real (no mocks)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _chromium import file_url, find_chromium, inspect_page
from conftest import TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv
from transferkit.cli.main import _register_commands, app
from transferkit.errors import ConfigError, DataError

_register_commands()
runner = CliRunner()
CLASSES = ("cat", "dog", "fox")


def _cli(*args: str):
    return runner.invoke(app, ["explore", *args])


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "explore.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def flipped_run(tmp_path_factory):
    """Three classes of 12 images with two images moved into another class's folder (their labels flipped),
    explored once through the CLI: (output folder, true class per row id, the flipped row ids)."""
    root = tmp_path_factory.mktemp("explore-images")
    data = write_image_folder(root / "images", classes=CLASSES, per_class=12)
    flipped = []
    for source, target in (("cat/000.png", "dog/flipped-cat.png"), ("fox/001.png", "cat/flipped-fox.png")):
        shutil.move(data / source, data / target)
        flipped.append(target)
    truth = {f"{c}/{p.name}": c for c in CLASSES for p in (data / c).iterdir()}
    truth.update({"dog/flipped-cat.png": "cat", "cat/flipped-fox.png": "fox"})
    out = root / "out"
    result = _cli(str(data), "-b", TINY_IMAGE_BACKBONE, "-o", str(out), "--cache-dir", str(root / "cache"), "-q")
    assert result.exit_code == 0, result.output
    return out, truth, flipped, result.output


def _short(row_id: str) -> str:
    return "/".join(Path(row_id).parts[-2:])


def test_clusters_recover_the_known_groups(flipped_run) -> None:
    from sklearn.metrics import adjusted_rand_score

    out, truth, _, summary = flipped_run
    rows = _rows(out)
    assert len(rows) == 36 and "clusters: 3 (k-means, 3 clusters: the best silhouette score" in summary
    true = [truth[_short(r["row_id"])] for r in rows]
    assert adjusted_rand_score(true, [r["cluster"] for r in rows]) == pytest.approx(1.0)


def test_flipped_labels_are_ranked_at_the_top(flipped_run) -> None:
    out, _, flipped, summary = flipped_run
    rows = sorted(_rows(out), key=lambda r: -float(r["label_issue_score"]))
    assert {_short(r["row_id"]) for r in rows[:2]} == set(flipped)
    assert all(r["label_issue"] == "True" for r in rows[:2])
    assert sum(r["label_issue"] == "True" for r in rows) <= 4  # the flips, not the whole data
    assert "most likely wrong:" in summary


def test_tables_hold_every_column_for_every_example(flipped_run) -> None:
    import pyarrow.parquet as pq

    from transferkit.exploration.result import COLUMNS

    out, _, _, _ = flipped_run
    table = pq.read_table(out / "explore.parquet")
    assert tuple(table.column_names) == COLUMNS and table.num_rows == 36
    assert tuple(_rows(out)[0]) == COLUMNS
    assert (out / "summary.json").is_file()


def test_the_page_opens_in_chromium_with_its_map_and_tables(flipped_run) -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: run `make chromium` (apt-get install -y chromium)")
    out, _, _, _ = flipped_run
    hover = ("(() => { const c = document.querySelectorAll('#points-map circle'); const r = c[0].getBoundingClientRect();"
             " c[0].dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.x, clientY: r.y}));"
             " const tip = document.getElementById('tip');"
             " return {circles: c.length, tip: tip.style.display, tipImages: tip.querySelectorAll('img').length,"
             " tables: document.querySelectorAll('table').length,"
             " sections: Array.from(document.querySelectorAll('section')).map(s => s.id)}; })()")
    page = inspect_page(file_url(out / "explore.html"), probe=hover)
    assert page.console_errors == []
    assert page.probe["circles"] == 36
    assert page.probe["tip"] == "block" and page.probe["tipImages"] == 1  # hovering shows the thumbnail
    assert {"map", "clusters", "duplicates", "outliers", "label-issues"} <= set(page.probe["sections"])
    assert page.probe["tables"] >= 1
    thumbs = [i for i in page.images if i["cls"] == "thumb"]
    assert len(thumbs) >= 3 * 6 and all(t["complete"] and t["width"] > 0 for t in thumbs)


def _noise_images(folder: Path, count: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        size = rng.integers(4, 16)
        small = rng.integers(0, 256, size=(size, size, 3)).astype(np.uint8)
        image = Image.fromarray(small).resize((32, 32), Image.NEAREST)
        paths.append(folder / f"{seed}-{i:02d}.png")
        image.save(paths[-1])
    return paths


def test_an_injected_exact_and_near_duplicate_are_found(tmp_path: Path) -> None:
    import transferkit as tk

    data = tmp_path / "data"
    originals = _noise_images(data / "a", 8, 1) + _noise_images(data / "b", 8, 2)
    near = np.asarray(Image.open(originals[3])).copy()
    near[0, 0] = 255 - near[0, 0]  # one pixel changed: other bytes, nearly the same picture
    Image.fromarray(near).save(data / "a" / "near-copy.png")
    (tmp_path / "test" / "b").mkdir(parents=True)
    shutil.copy(originals[10], tmp_path / "test" / "b" / "leaked.png")  # the same file in the test split
    _noise_images(tmp_path / "test" / "a", 2, 3)
    result = tk.explore(str(data), test=str(tmp_path / "test"), backbone=TINY_IMAGE_BACKBONE, map="pca",
                        clusters=2, progress=False)
    t = result.table
    by_name = {Path(r).name: i for i, r in enumerate(t["row_id"])}
    exact = [by_name[originals[10].name], by_name["leaked.png"]]
    close = [by_name[originals[3].name], by_name["near-copy.png"]]
    assert t["duplicate_group"][exact[0]] == t["duplicate_group"][exact[1]] >= 0
    assert [t["duplicate_kind"][i] for i in exact] == ["exact", "exact"]
    assert {t["split"][i] for i in exact} == {"data", "test"} and result.facts["cross_split_groups"] == 1
    assert t["duplicate_group"][close[0]] == t["duplicate_group"][close[1]] >= 0
    assert [t["duplicate_kind"][i] for i in close] == ["near", "near"]
    assert sum(g >= 0 for g in t["duplicate_group"]) == 4  # no other example is called a duplicate


def test_text_clusters_have_terms_and_unlabelled_texts_get_suggestions(tmp_path: Path, tiny_text_model) -> None:
    import transferkit as tk

    data = write_text_csv(tmp_path / "reviews.csv")
    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("text\na wonderful and great film\na dull and boring mess\nbrilliant acting\n", encoding="utf-8")
    result = tk.explore(str(data), unlabelled=str(unlabelled), suggest_labels=True, backbone=str(tiny_text_model),
                        map="pca", clusters=2, output=str(tmp_path / "out"), progress=False)
    t = result.table
    suggested = [i for i, s in enumerate(t["split"]) if s == "unlabelled"]
    assert len(suggested) == 3
    assert all(t["suggested_label"][i] in ("positive", "negative") for i in suggested)
    assert all(0.5 <= t["suggested_probability"][i] <= 1 for i in suggested)
    assert all(t["suggested_label"][i] is None for i in range(len(t["split"])) if i not in suggested)
    assert any(c["terms"] for c in result.clusters)  # distinctive words of a cluster's texts
    assert "Suggested labels" in (tmp_path / "out" / "explore.html").read_text(encoding="utf-8")


# --- input that cannot be explored -------------------------------------------------------------------------------


def _image(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("case, expected", [
    ("empty", "no images found"),
    ("one", "1 example(s); explore needs at least 3"),
    ("identical", "all 4 examples have the same content"),
])
def test_data_that_cannot_be_explored_is_refused(tmp_path: Path, case: str, expected: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if case == "one":
        _image(data / "only.png")
    if case == "identical":
        for i in range(4):
            _image(data / f"same-{i}.png", value=7)
    result = _cli(str(data), "-b", TINY_IMAGE_BACKBONE, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert expected in result.output and str(data.name) in result.output
    assert not (tmp_path / "out" / "explore.csv").exists()


def test_suggest_labels_without_unlabelled_data_names_the_option(image_folder: Path, tmp_path: Path) -> None:
    result = _cli(str(image_folder), "--suggest-labels", "-b", TINY_IMAGE_BACKBONE, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "suggest_labels" in result.output and "--unlabelled" in result.output


def test_an_earlier_explore_is_not_replaced_without_overwrite(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "explore.csv").write_text("earlier", encoding="utf-8")
    result = _cli(str(image_folder), "-b", TINY_IMAGE_BACKBONE, "-o", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "explore.csv" in result.output and "--overwrite" in result.output
    assert (out / "explore.csv").read_text(encoding="utf-8") == "earlier"


def test_python_api_refuses_the_same_input(tmp_path: Path) -> None:
    import transferkit as tk

    with pytest.raises(DataError, match="needs at least 3"):
        tk.explore(str(_image(tmp_path / "one" / "x.png").parent), backbone=TINY_IMAGE_BACKBONE)
    with pytest.raises(ConfigError, match="option 'map'"):
        tk.explore(str(tmp_path), map="mds")


def test_audio_clips_are_explored_through_the_same_verb(tmp_path: Path) -> None:
    from _audio_clips import require_drumkits, write_drum_folder

    require_drumkits()
    data = write_drum_folder(tmp_path / "drums", per_class=2, seconds=0.3)
    result = _cli(str(data), "-b", "random:aisfx", "--map", "pca", "-o", str(tmp_path / "out"), "-q")
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out")
    assert len(rows) == 6 and all(r["cluster"] != "" and r["label_issue_score"] != "" for r in rows)
    page = (tmp_path / "out" / "explore.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 6  # each clip's spectrogram among the cluster examples
