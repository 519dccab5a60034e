"""recommend: the interactions and item tables and their checks, the ranking metrics against hand-computed values,
the cold-start split, a tiny run end to end (API and CLI), and the saved model's top lists."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from transferkit.cli.main import _register_commands, app
from transferkit.errors import ConfigError, DataError

_register_commands()
runner = CliRunner()

TOPICS = {"space": ["rockets", "stars", "galaxy", "astronaut"], "kitchen": ["recipe", "bread", "soup", "oven"],
          "sport": ["football", "goal", "match", "team"]}


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _items_rows() -> list[list]:
    return [[f"{topic}{i}", f"{words[i % 4]} story {i}", topic] for topic, words in TOPICS.items() for i in range(8)]


def _interaction_rows() -> list[list]:
    """12 users, each interacting with 5 items of one topic, at increasing times."""
    rng = np.random.default_rng(0)
    rows, time = [], 0
    for user in range(12):
        topic = list(TOPICS)[user % 3]
        for i in rng.choice(8, 5, replace=False):
            time += 1
            rows.append([f"u{user}", f"{topic}{i}", 5, time])
    return rows


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, Path]:
    return {"items": _write(tmp_path / "items.csv", ["item_id", "title", "genre"], _items_rows()),
            "interactions": _write(tmp_path / "ratings.csv", ["user", "item", "rating", "timestamp"],
                                   _interaction_rows())}


FAST = dict(factors=4, epochs=1, iterations=3, progress=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_text_model) -> dict[str, Path]:
    """One saved recommender (the tiny BERT as backbone), fitted through the CLI."""
    root = tmp_path_factory.mktemp("recommend")
    items = _write(root / "items.csv", ["item_id", "title", "genre"], _items_rows())
    interactions = _write(root / "ratings.csv", ["user", "item", "rating", "timestamp"], _interaction_rows())
    result = runner.invoke(app, ["recommend", "fit", str(interactions), "--items", str(items), "--output",
                                 str(root / "model"), "--backbone", str(tiny_text_model), "--factors", "4",
                                 "--epochs", "1", "--iterations", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    return {"model": root / "model", "items": items, "interactions": interactions, "output": result.output}


# --- metrics and split ------------------------------------------------------------------------------------------


def test_metrics_match_hand_computed_values():
    from transferkit.recommendation.metrics import coverage, per_user_metrics

    lists = np.array([[3, 1, 7], [2, 5, -1]])
    relevant = [{1, 9}, {4}]
    cold = np.zeros(10, dtype=bool)
    cold[[3, 5]] = True
    out = per_user_metrics(lists, relevant, 3, cold)
    # user 0: one hit (item 1) at rank 2 of 2 relevant items
    assert out["recall"][0] == pytest.approx(0.5)
    assert out["ndcg"][0] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert out["map"][0] == pytest.approx((1 / 2) / 2)
    assert out["cold_share"][0] == pytest.approx(1 / 3)
    # user 1: no hit; one cold item among its two filled slots
    assert out["recall"][1] == 0 and out["ndcg"][1] == 0 and out["map"][1] == 0
    assert out["cold_share"][1] == pytest.approx(0.5)
    assert coverage(lists, 10) == pytest.approx(5 / 10)


def test_split_holds_cold_items_out_of_training_and_each_users_latest_interactions(tables):
    from transferkit.data.interactions import load_catalogue, load_interactions
    from transferkit.recommendation.config import RecommendConfig
    from transferkit.recommendation.evaluation import split_interactions

    config = RecommendConfig(items=str(tables["items"]), cold_items=0.25, cold_users=0.25, cold_user_likes=2,
                             test_fraction=0.2)
    catalogue = load_catalogue(tables["items"], config)
    data = load_interactions(tables["interactions"], catalogue.item_ids, catalogue.origin, config)
    split = split_interactions(data, len(catalogue.item_ids), config, seed=0)
    assert not split.cold[data.items[split.train]].any()
    assert split.cold.sum() == round(0.25 * np.unique(data.items).size)
    held = set(split.test.tolist()) | set(split.revealed.tolist()) | set(split.cold_user_test.tolist())
    assert set(np.flatnonzero(split.cold[data.items])) <= held
    assert split.cold_users.sum() == 3 and not split.cold_users[data.users[split.train]].any()
    for user in np.flatnonzero(split.cold_users):  # a cold user's 2 earliest interactions are revealed, not trained
        revealed = data.times[split.revealed][data.users[split.revealed] == user]
        later = data.times[split.cold_user_test][data.users[split.cold_user_test] == user]
        assert revealed.size == 2 and later.size == 3 and revealed.max() < later.min()
    for user in np.flatnonzero(~split.cold_users):  # the held-out warm interactions are the user's latest ones
        train_times = data.times[split.train][data.users[split.train] == user]
        test_rows = split.test[(data.users[split.test] == user) & ~split.cold[data.items[split.test]]]
        assert train_times.size >= 1
        if test_rows.size:
            assert data.times[test_rows].min() > train_times.max()


# --- end to end ---------------------------------------------------------------------------------------------------


def test_fit_evaluates_every_model_and_only_content_and_hybrid_recommend_cold_items(tables, tiny_text_model):
    import transferkit as tk

    result = tk.recommend_fit(tables["interactions"], items=tables["items"], backbone=str(tiny_text_model),
                              cold_items=0.25, cold_user_likes=2, **FAST)
    views = result.evaluation.views
    assert set(views) == {"warm", "cold", "all", "new users"}
    assert views["new users"]["hybrid"]["users"] == result.evaluation.facts["cold_users"] == 1
    assert set(views["all"]) == {"popularity", "id", "content", "hybrid"}
    assert views["cold"]["id"]["recall"] is None  # id-only cannot score an item without interactions
    assert views["all"]["id"]["cold_share"] == 0 and views["all"]["popularity"]["cold_share"] == 0
    assert views["cold"]["content"]["cold_share"] == 1 and views["cold"]["hybrid"]["cold_share"] == 1
    assert views["all"]["hybrid"]["cold_share"] > 0
    verdicts = {(c["view"], c["model"], c["metric"]): c["verdict"] for c in result.evaluation.comparisons}
    assert ("cold", "hybrid", "recall") in verdicts and ("all", "hybrid", "coverage") in verdicts
    assert all(v in ("helped", "hurt", "no measurable difference") for v in verdicts.values())


def test_cli_fit_saves_a_recommender_with_its_results_and_run_config(fitted):
    from transferkit.models.artifacts import load_model
    from transferkit.models.recommender import Recommender

    folder = fitted["model"]
    model = load_model(folder)
    assert isinstance(model, Recommender) and len(model.item_ids) == 24 and len(model.user_ids) == 12
    assert "hybrid" in (folder / "results.txt").read_text().split("recall@10")[1] and "saved to" in fitted["output"]
    assert "cold_items: 0.2" in (folder / "run_config.yaml").read_text()
    assert json.loads((folder / "config.json").read_text())["kind"] == "recommender"
    report = (folder / "report.html").read_text()
    assert '<section id="extra-0"><h2>Recommendation</h2>' in report and "cold items, recall@k" in report


def test_cli_top_for_a_user_leaves_out_what_they_saw(fitted):
    result = runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--user", "u0", "-k", "30", "--json"])
    assert result.exit_code == 0, result.output
    listed = [row["item"] for row in json.loads(result.output)]
    seen = {row[1] for row in _interaction_rows() if row[0] == "u0"}
    assert listed and not seen & set(listed) and len(listed) == 24 - len(seen)


def test_cli_top_for_a_new_user_from_the_items_they_liked(fitted):
    from transferkit.models.artifacts import load_model

    result = runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--likes", "space1,space2", "-k", "5",
                                 "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 5 and not {"space1", "space2"} & {r["item"] for r in rows}
    model = load_model(fitted["model"])
    liked = [model.item_ids.index("space1"), model.item_ids.index("space2")]
    vectors = model.item_vectors("hybrid")
    expected = np.linalg.solve(vectors.T @ vectors + model.regularization * np.eye(vectors.shape[1]),
                               vectors[liked].sum(axis=0))  # the ALS user step, written out
    assert np.allclose(model.fold_in(liked), expected, rtol=1e-4, atol=1e-6)
    _assert_refused(runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--likes", "space1,nothing"]),
                    "item 'nothing'")


def test_cli_top_lists_items_similar_to_a_catalogue_item_and_to_a_new_one(fitted):
    by_item = runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--item", "space1", "-k", "3", "--json"])
    assert by_item.exit_code == 0, by_item.output
    rows = json.loads(by_item.output)
    assert len(rows) == 3 and "space1" not in [r["item"] for r in rows]
    new = runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--content", "a galaxy of rockets", "-k", "2"])
    assert new.exit_code == 0, new.output
    assert "rank" in new.output and len(new.output.strip().splitlines()) == 3
    # a new item with the very content of space1 (its columns joined) lands on space1 itself
    same = runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--content", "stars story 1. space", "--json"])
    nearest = json.loads(same.output)[0]
    assert nearest["item"] == "space1" and nearest["score"] == pytest.approx(1.0, abs=1e-4)


def test_cli_evaluate_prints_the_saved_evaluation_and_scores_new_interactions(fitted, tmp_path):
    saved = runner.invoke(app, ["recommend", "evaluate", str(fitted["model"])])
    assert saved.exit_code == 0, saved.output
    assert "hybrid" in saved.output and "cold" in saved.output
    later = _write(tmp_path / "later.csv", ["user", "item"], [["u0", "space7"], ["u1", "kitchen2"], ["u99", "sport1"]])
    scored = runner.invoke(app, ["recommend", "evaluate", str(fitted["model"]), str(later), "--json"])
    assert scored.exit_code == 0, scored.output
    document = json.loads(scored.stdout)
    assert document["views"]["all"]["hybrid"]["users"] == 2  # u99 is unknown to the model: left out, with a warning
    assert "1 interactions of users the model does not know are left out" in scored.output


def test_image_items_through_a_path_column_and_a_new_image_item(tmp_path):
    from conftest import TINY_IMAGE_BACKBONE, write_image_folder

    import transferkit as tk

    files = sorted(write_image_folder(tmp_path / "pics", per_class=3).rglob("*.png"))
    items = _write(tmp_path / "items.csv", ["item", "path"],
                   [[f"i{i}", str(p.relative_to(tmp_path))] for i, p in enumerate(files)])
    rows = [[f"u{u}", f"i{(u + j) % len(files)}"] for u in range(6) for j in range(4)]
    interactions = _write(tmp_path / "ratings.csv", ["user", "item"], rows)
    result = tk.recommend_fit(interactions, items=items, path_column="path", backbone=TINY_IMAGE_BACKBONE,
                              evaluate=False, output=str(tmp_path / "model"), report=False, **FAST)
    assert result.facts["modality"] == "image" and result.evaluation is None
    nearest = tk.recommend_top(tmp_path / "model", content=str(files[4]), k=1)[0]
    assert nearest["item"] == "i4" and nearest["score"] == pytest.approx(1.0, abs=1e-4)


# --- mistakes -----------------------------------------------------------------------------------------------------


def _fit_cli(interactions: Path, items: Path, output: Path, *extra: str):
    return runner.invoke(app, ["recommend", "fit", str(interactions), "--items", str(items), "--output", str(output),
                               "--factors", "4", "--epochs", "1", *extra])


def _assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_an_interaction_with_an_item_missing_from_the_item_table_is_refused_naming_its_row(tables, tmp_path):
    rows = _interaction_rows()
    rows[3][1] = "space99"
    bad = _write(tmp_path / "bad.csv", ["user", "item", "rating", "timestamp"], rows)
    _assert_refused(_fit_cli(bad, tables["items"], tmp_path / "out"), "bad.csv line 5", "space99",
                    "add it there with its content")
    assert not (tmp_path / "out").exists()


def test_a_duplicate_interaction_row_is_refused_naming_both_rows(tables, tmp_path):
    rows = _interaction_rows()
    rows.append(list(rows[0]))
    bad = _write(tmp_path / "dup.csv", ["user", "item", "rating", "timestamp"], rows)
    _assert_refused(_fit_cli(bad, tables["items"], tmp_path / "out"), f"dup.csv line {len(rows) + 1}",
                    "dup.csv line 2", "drop the duplicate row")


def test_an_item_without_content_is_refused_naming_its_row(tables, tmp_path):
    rows = _items_rows()
    rows[2][1:] = ["", ""]
    bad = _write(tmp_path / "items.csv", ["item_id", "title", "genre"], rows)
    _assert_refused(_fit_cli(tables["interactions"], bad, tmp_path / "out"), "items.csv line 4", "space2",
                    "has no content", "fill in a title or description")


def test_a_missing_user_column_is_refused_naming_the_file_and_the_flag(tables, tmp_path):
    bad = _write(tmp_path / "nouser.csv", ["who", "item"], [[r[0], r[1]] for r in _interaction_rows()])
    _assert_refused(_fit_cli(bad, tables["items"], tmp_path / "out"), "nouser.csv", "no user-id column",
                    "--user-column")


def test_an_item_listed_twice_in_the_item_table_is_refused(tables, tmp_path):
    rows = _items_rows() + [_items_rows()[0]]
    bad = _write(tmp_path / "items2.csv", ["item_id", "title", "genre"], rows)
    _assert_refused(_fit_cli(tables["interactions"], bad, tmp_path / "out"), f"items2.csv line {len(rows) + 1}",
                    "listed twice", "items2.csv line 2")


def test_fit_without_an_item_table_is_refused_before_any_work(tables):
    with pytest.raises(ConfigError, match="--items"):
        import transferkit as tk

        tk.recommend_fit(tables["interactions"])


def test_an_existing_model_is_not_replaced_without_overwrite(fitted, tmp_path):
    before = (fitted["model"] / "model.safetensors").read_bytes()
    result = _fit_cli(fitted["interactions"], fitted["items"], fitted["model"])
    _assert_refused(result, str(fitted["model"]), "--overwrite")
    assert (fitted["model"] / "model.safetensors").read_bytes() == before


def test_top_for_an_unknown_user_or_item_is_refused_with_the_fix(fitted):
    _assert_refused(runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--user", "nobody"]),
                    "user 'nobody'", "--likes")
    _assert_refused(runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--item", "nothing"]),
                    "item 'nothing'", "--content")
    _assert_refused(runner.invoke(app, ["recommend", "top", str(fitted["model"]), "--user", "u0", "--item", "space1"]),
                    "exactly one of")


def test_min_rating_without_a_rating_column_is_refused(tables, tmp_path):
    from transferkit.data.interactions import load_interactions
    from transferkit.recommendation.config import RecommendConfig

    bare = _write(tmp_path / "bare.csv", ["user", "item"], [[r[0], r[1]] for r in _interaction_rows()])
    config = RecommendConfig(min_rating=4)
    with pytest.raises(DataError, match="--min-rating needs a rating column.*--rating-column"):
        load_interactions(bare, [r[0] for r in _items_rows()], "items.csv", config)


def test_the_coverage_test_tells_a_wider_catalogue_from_chance():
    from transferkit.recommendation.metrics import coverage_test

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 200, size=(50, 5))
    narrow = rng.integers(0, 20, size=(50, 5))
    diff, p = coverage_test(wide, narrow, 200, n_perm=200)
    assert diff > 0.3 and p < 0.01
    same = rng.integers(0, 200, size=(50, 5))
    _, p_same = coverage_test(wide, same, 200, n_perm=200)
    assert p_same > 0.05


def test_the_service_answers_post_recommend_and_refuses_what_it_cannot_answer(fitted):
    from fastapi.testclient import TestClient

    from transferkit.serving.app import create_app, load_predictor
    from transferkit.serving.settings import make_serve_config

    settings = make_serve_config(model=str(fitted["model"]))
    with TestClient(create_app(settings, load_predictor(settings))) as client:
        answer = client.post("/recommend", json={"user": "u0", "k": 3})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["items"]) == 3
        assert client.post("/recommend", json={"content": "galaxy rockets", "k": 2}).status_code == 200
        assert client.post("/recommend", json={"item": "space1", "k": 2}).json()["items"][0]["item"] != "space1"
        unknown = client.post("/recommend", json={"user": "nobody"})
        assert unknown.status_code == 422 and "user 'nobody'" in unknown.json()["detail"]
        assert len(client.post("/recommend", json={"likes": ["space1"], "k": 4}).json()["items"]) == 4
        both = client.post("/recommend", json={"user": "u0", "item": "space1"})
        assert both.status_code == 422 and "exactly one" in both.json()["detail"]
        extra = client.post("/recommend", json={"users": "u0"})
        assert extra.status_code == 422 and "unknown field 'users'" in extra.json()["detail"]
        predict = client.post("/predict", json={"texts": ["a"]})
        assert predict.status_code == 400 and "POST /recommend" in predict.json()["detail"]
        assert client.get("/info").json()["kind"] == "recommender"


@pytest.mark.parametrize("verb", ["predict", "evaluate", "export"])
def test_verbs_for_label_models_refuse_a_recommender_naming_the_commands_to_use(fitted, tmp_path, verb):
    texts = _write(tmp_path / "texts.csv", ["text", "label"], [["a galaxy", "space"]])
    args = [verb, str(fitted["model"])] + ([] if verb == "export" else [str(texts)])
    before = sorted(p.name for p in fitted["model"].iterdir())
    _assert_refused(runner.invoke(app, args), "this is a recommender", "transferkit recommend top")
    assert sorted(p.name for p in fitted["model"].iterdir()) == before
