"""`compress`, `validate` and `recipes`: run, check and list recipes."""

from __future__ import annotations

import json
import time

import click

from edgedistill import STARTED

from .main import cli, import_option


@cli.command()
@click.option("--recipe", "-r", "recipe_name", required=True, help="built-in recipe name (see `edgedistill recipes`) or a YAML path")
@click.option("--out", type=click.Path(file_okay=False), help="run directory (default runs/<recipe name>)")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="override a recipe value, e.g. --set stages.0.train.epochs=2 (repeatable)")
@click.option("--resume", is_flag=True, help="skip stages that already finished in the run directory")
@click.option("--overwrite", is_flag=True, help="replace the results of an earlier run in the run directory")
@click.option("--json", "as_json", is_flag=True, help="print report.json to stdout instead of the summary")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="threads for training, scoring and calibration (default: the recipe's `threads`, else "
                   "OMP_NUM_THREADS, else half the usable CPUs)")
@import_option
def compress(recipe_name: str, out: str | None, overrides: tuple[str, ...], resume: bool, overwrite: bool,
             as_json: bool, threads: int | None) -> None:
    """Run a recipe: teacher → distill → prune → quantize → export, then evaluate and profile the exported file.

    A run directory holding an earlier run's results needs --resume or --overwrite. Exit code 0 when every gate
    passed, 1 when a gate failed, 2 on bad input, 3 on an internal error (see the crash file it names)."""
    from edgedistill.pipeline import run_pipeline
    from edgedistill.recipe import load_recipe
    from edgedistill.report.summary import format_summary

    recipe = load_recipe(recipe_name, list(overrides))
    result = run_pipeline(recipe, out, resume=resume, overwrite=overwrite, threads_flag=threads)
    if as_json:
        click.echo(json.dumps(result.report, indent=2))
    else:
        for note in result.notes:
            click.echo(note)
        click.echo(format_summary(result.report, str(result.run_dir), wall_seconds=time.monotonic() - STARTED))
    raise SystemExit(0 if result.report["passed"] else 1)


@cli.command()
@click.argument("recipe_name", metavar="RECIPE")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="override a recipe value")
@import_option
def validate(recipe_name: str, overrides: tuple[str, ...]) -> None:
    """Check a recipe (schema, files, stage order, targets) and probe its models on one small batch of its data,
    without training anything."""
    from edgedistill.data import load_dataset
    from edgedistill.models.probe import probe_recipe
    from edgedistill.recipe import load_recipe
    from edgedistill.tasks import build_task

    recipe = load_recipe(recipe_name, list(overrides))
    data = load_dataset(recipe.config.data)
    probe_recipe(recipe, data, build_task(recipe.config.task, data))
    kinds = " → ".join(["teacher", *(s.kind for s in recipe.config.stages)])
    click.echo(f"{recipe.source}: ok ({kinds}; sha256 {recipe.sha256[:12]})")


@cli.command()
def recipes() -> None:
    """List the built-in recipes, one line each."""
    import yaml

    from edgedistill.recipe import builtin_recipe_names, read_recipe_text

    names = builtin_recipe_names()
    width = max(map(len, names), default=0) + 2
    for name in names:
        text, _ = read_recipe_text(name)
        click.echo(f"{name:<{width}}{(yaml.safe_load(text) or {}).get('description', '')}")
