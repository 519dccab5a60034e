"""``transferkit recommend fit | evaluate | top``: recommendations with items described by a pretrained backbone.
Thin: parse, call, print."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.recommendation.config import RecommendConfig

recommend_app = typer.Typer(help="Recommendations from interactions, items described by a pretrained backbone (cold-start items included).",
                            no_args_is_help=True)
app.add_typer(recommend_app, name="recommend")

#: recommend fit's flags: every RecommendConfig field but the labelled-data ones.
RECOMMEND_FLAGS = ConfigFlags(RecommendConfig, exclude={
    "progress": "set by --quiet and --json",
    "label_column": "interactions have no labels: the positives are the rows (see --min-rating)",
    "normalize_labels": "interactions have no labels"})


@recommend_app.command("fit")
@config_flags(RECOMMEND_FLAGS)
def fit(
    interactions: str = typer.Argument(..., help="The interactions: a table (CSV/TSV/JSONL/Parquet) with a user column, an item column and, optionally, a rating and a timestamp column."),
    config_file: Optional[str] = typer.Option(None, "--config", "-c", help="YAML file of options; flags given override it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from RECOMMEND_FLAGS
) -> None:
    """Train a recommender on INTERACTIONS with the items of --items described by a backbone's frozen features:
    id-only (alternating least squares), content-only and hybrid, scored on held-out users' latest interactions and
    on held-out (cold) items, then trained on everything and saved to --output."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.recommendation.config import make_recommend_config
        from transferkit.workflows.recommend import recommend_fit

        values = load_config_file(config_file) if config_file else {}
        if quiet or as_json:
            values["progress"] = False
        config = merge_config(values, options, "recommend fit", build=make_recommend_config)
        result = recommend_fit(interactions, config=config)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.summary())


@recommend_app.command("evaluate")
def evaluate(
    model: str = typer.Argument(..., help="A model folder saved by `transferkit recommend fit`."),
    interactions: Optional[str] = typer.Argument(None, help="Later interactions to score the model on (same columns as for fit); without it, the held-out evaluation saved by fit is printed."),
    k: int = typer.Option(10, "-k", help="Length of the recommendation lists scored."),
    user_column: Optional[str] = typer.Option(None, "--user-column", help="User-id column of the interactions."),
    item_column: Optional[str] = typer.Option(None, "--item-column", help="Item-id column of the interactions."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Score a saved recommender (recall, NDCG and MAP at k, coverage, cold share; verdicts against id-only and
    popularity)."""
    _setup(as_json)
    try:
        from transferkit.workflows.recommend import recommend_evaluate

        result = recommend_evaluate(model, interactions, k=k, user_column=user_column, item_column=item_column)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    typer.echo(result.table())
    typer.echo("")
    typer.echo("\n".join(result.sentences()))


@recommend_app.command("top")
def top(
    model: str = typer.Argument(..., help="A model folder saved by `transferkit recommend fit`."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Recommend for this user (items they have not interacted with)."),
    likes: Optional[str] = typer.Option(None, "--likes", help="Recommend for a new user (not in the model) who liked these items (comma-separated ids), without retraining."),
    item: Optional[str] = typer.Option(None, "--item", "-i", help="List the catalogue items whose content is nearest this item's."),
    content: Optional[str] = typer.Option(None, "--content", help="A new item's content (its text, or its image or audio file): list the catalogue items nearest it."),
    k: int = typer.Option(10, "-k", help="How many items to list."),
    scorer: str = typer.Option("hybrid", "--scorer", help="For --user: hybrid, id, content or popularity."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """The best items for a user (known, or new: --likes), or the items most similar to an item (a catalogue item,
    or a new one by its content)."""
    _setup(as_json)
    try:
        from transferkit.workflows.recommend import recommend_top

        liked = None if likes is None else [part.strip() for part in likes.split(",") if part.strip()]
        rows = recommend_top(model, user=user, likes=liked, item=item, content=content, k=k, scorer=scorer)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'rank':>4}  {'item':<30} {'score':>10}  cold")
    for rank, row in enumerate(rows, 1):
        typer.echo(f"{rank:>4}  {row['item']:<30} {row['score']:>10.4f}  {'yes' if row['cold'] else ''}")
