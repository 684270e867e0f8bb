"""Recipes: YAML (safe_load only, never code) → a validated, resolved and hashed `Recipe`.

Every mistake is reported as `file:line: field: problem` with a fix, so a typo costs seconds, not a run.
The stage list is a union assembled from the stage registry, so new stages need no edit here.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from .config import Strict, TeacherConfig
from .data import DataConfig
from .errors import UserError, did_you_mean
from .stages import START, load_stages
from .yamlsafe import MAX_DEPTH, non_finite
from .yamlsafe import compose as compose_yaml
from .yamlsafe import load as load_yaml
from .yamlsafe import read_text as read_utf8

# A run folder is runs/<name>: a name is one path component, never "..", an absolute path or a hidden file.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
SEED_MAX = 2**32 - 1  # numpy's limit; torch accepts more, but one seed drives both
INT_LIMIT = 2**53  # no recipe count comes close; larger ones only overflow later, deep inside a stage


class EvaluateConfig(Strict):
    split: Literal["test", "val"] = Field("test", description="split the final metrics are measured on")


class ProfileConfig(Strict):
    runs: int = Field(200, ge=1, le=1_000_000, description="timed runs per model and target")
    warmup: int = Field(20, ge=0, le=1_000_000, description="untimed runs first")
    burst: int = Field(10, ge=1, le=1_000_000, description="runs per interleaved burst")
    rounds: int = Field(3, ge=1, le=100, description="fresh worker processes per model, the bursts split among them "
                                                     "(one process's memory layout can bias it 10-25%)")
    batch: int | None = Field(None, ge=1, description="profile only this batch size; default: each of the target's batch_sizes (the first under the target's name, others as <target>@b<N>)")
    threads: int | None = Field(None, ge=1, description="defaults to the target's thread count")
    sequence_lengths: list[int] | None = Field(
        None, description="text models: token lengths to profile (the first under the target's name, others as "
                          "<target>@s<L>); default: the target's sequence_lengths")

    @field_validator("sequence_lengths")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(n < 1 or n > 1_000_000 for n in v)):
            raise ValueError("sequence_lengths must be a non-empty list of positive token counts")
        return v


class GatesConfig(Strict):
    """Limits checked after a run (vs the teacher) and by `edgedistill check` (vs a baseline report)."""

    accuracy_drop: float | None = Field(None, ge=0, description="max metric drop of the deployed file")
    min_metric: float | None = Field(None, description="lowest acceptable deployed metric")
    max_size_mb: float | None = Field(None, gt=0, description="largest acceptable deployed size on disk")
    max_latency_ratio: float | None = Field(
        None, gt=0, description="largest deployed p50 / teacher p50, timed interleaved in the same run "
                                "(first usable target, first batch size and sequence length)")
    size_growth: float | None = Field(None, ge=0, description="check: max relative size growth vs baseline")
    latency_growth: float | None = Field(None, ge=0, description="check: max relative p50 growth vs baseline")


def _stage_union() -> Any:
    stages = load_stages()
    variants = []
    for kind, spec in sorted(stages.items()):
        variants.append(create_model(f"Stage_{kind}", __base__=spec.config, kind=(Literal[kind], ...)))
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007


def _task_union() -> Any:
    """The `task:` section: a union of the registered tasks' configs, told apart by `kind`."""
    from .tasks import load_tasks

    variants = [cls.Config for _, cls in sorted(load_tasks().items())]
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007


def _recipe_model() -> type[BaseModel]:
    from .tasks import TASKS

    return create_model(
        "Recipe",
        __base__=Strict,
        name=(str, Field(pattern=NAME_PATTERN, description="run name (letters, digits, . _ -); the run directory defaults to runs/<name>")),
        description=(str, Field("", description="one line shown by `edgedistill recipes`")),
        seed=(int, Field(0, ge=0, le=SEED_MAX, description="seeds data order, initialisation and sampling (0..2**32-1)")),
        threads=(Union[Literal["auto"], Annotated[int, Field(ge=1, le=1024)]],  # noqa: UP007
                 Field("auto", description="threads for training, scoring and calibration in this process: a count, "
                                           "or auto (half the CPUs this process may use, at least 1; see README "
                                           "Threads). --threads and OMP_NUM_THREADS override auto; latency is "
                                           "timed with each target's own thread count")),
        task=(_task_union(), Field(default_factory=lambda: TASKS["image_classification"].Config(),
                                   description="what the model does (image_classification, ...): its inputs, "
                                               "outputs, loss and metric; `task: NAME` or `task: {kind: NAME, ...}`")),
        data=(DataConfig, Field(description="the dataset")),
        teacher=(TeacherConfig, Field(description="the model to compress")),
        stages=(list[_stage_union()], Field(min_length=1, description="run in order; an export stage is appended if missing")),
        evaluate=(EvaluateConfig, Field(EvaluateConfig(), description="how the final metrics are measured")),
        targets=(list[str], Field(default_factory=lambda: ["x86_vnni"], min_length=1, description="hardware targets (built-in names or YAML paths); the first sets the quantization preset")),
        profile=(ProfileConfig, Field(ProfileConfig(), description="latency measurement")),
        gates=(GatesConfig, Field(GatesConfig(), description="pass/fail limits (exit code 1 when one fails)")),
    )


class Recipe:
    """A validated recipe: `.config` (the pydantic model), where it came from, and its hash."""

    def __init__(self, config: BaseModel, source: str, raw_text: str, where: Any = None) -> None:
        self.config = config
        self.source = source
        self.raw_text = raw_text
        # where(("teacher", "model")) -> "recipe.yaml:12: teacher.model": checks after loading name lines too
        self.where = where or (lambda loc: f"{source}: {'.'.join(str(p) for p in loc)}")

    @property
    def name(self) -> str:
        return self.config.name

    def resolved(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()

    def stage_key(self, index: int) -> str:
        """Content hash of everything stage `index` depends on: seed, data, teacher and stages up to it."""
        r = self.resolved()
        part = {"seed": r["seed"], "data": r["data"], "teacher": r["teacher"], "stages": r["stages"][: index + 1]}
        if r["task"] != {"kind": "image_classification"}:  # the default keeps the keys of runs made before tasks
            part["task"] = r["task"]
        return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- loading


def builtin_recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("edgedistill.recipes").iterdir() if p.name.endswith(".yaml"))


def read_recipe_text(name_or_path: str) -> tuple[str, str]:
    """(text, source label) for a built-in name or a file path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return read_utf8(path), str(path)
    if path.suffix in (".yaml", ".yml") and "/" not in name_or_path and path.stem in builtin_recipe_names():
        name_or_path = path.stem  # `--recipe mobile.yaml` with no such file here: the built-in of that name
    elif path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        raise UserError("recipe file not found", where=str(path),
                        fix=f"check the path, or use a built-in recipe: {', '.join(builtin_recipe_names())}")
    res = resources.files("edgedistill.recipes") / f"{name_or_path}.yaml"
    if not res.is_file():
        names = builtin_recipe_names()
        raise UserError(f'no recipe named "{name_or_path}"{did_you_mean(name_or_path, names)}', where="--recipe",
                        fix=f"use a built-in recipe ({', '.join(names)}) or a path to a YAML file")
    return res.read_text(encoding="utf-8"), f"recipes/{name_or_path}.yaml (built-in)"


def _line_map(text: str, source: str) -> dict[tuple, int]:
    """Map each key path in the YAML document to its 1-based line number."""
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, key.value))
                lines[(*path, key.value)] = key.start_mark.line + 1  # the key's line, not its value's
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = compose_yaml(text, source)
    if root is not None:
        walk(root, ())
    return lines


def parse_set(assignments: list[str]) -> list[tuple[list[str], Any]]:
    """`--set stages.0.train.epochs=2` → (["stages", "0", "train", "epochs"], 2); values parsed as YAML."""
    out = []
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f'cannot parse "{item}"', where="--set", fix="write --set key.path=value, e.g. --set stages.0.train.epochs=2")
        try:
            parsed = load_yaml(value, f"--set {item}")
        except UserError as exc:
            raise UserError(exc.message, where=f"--set {item}",
                            fix="write the value as YAML; quote strings that contain : [ ] { } # or start with *, & or !") from None
        parts = key.split(".")
        if len(parts) > MAX_DEPTH:  # the same bound as a recipe file's nesting
            raise UserError(f"the key path is {len(parts)} levels deep, more than {MAX_DEPTH}", where=f"--set {item[:80]}",
                            fix="write the path of an existing recipe field, e.g. --set stages.0.train.epochs=2")
        out.append((parts, parsed))
    return out


def _apply_set(raw: dict, path: list[str], value: Any) -> None:
    node: Any = raw
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f'"{part}" is not an index of this list (0..{len(node) - 1})', where=f"--set {'.'.join(path)}",
                                fix="use a valid list index")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f'"{".".join(path[:i])}" is not a section', where=f"--set {'.'.join(path)}", fix="check the key path")


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Read, parse (safe_load), apply --set overrides, validate, and check files and stage order."""
    text, source = read_recipe_text(name_or_path)
    raw = load_yaml(text, source)
    if not isinstance(raw, dict):
        raise UserError("a recipe must be a YAML mapping (key: value)", where=source, fix="see recipes/mobile.yaml for an example")
    lines = _line_map(text, source)
    set_paths = parse_set(overrides or [])
    for path, value in set_paths:
        _apply_set(raw, path, value)
    overridden = {tuple(int(p) if p.isdigit() else p for p in path): ".".join(path) for path, _ in set_paths}

    def where(loc: tuple) -> str:
        field = ".".join(str(p) for p in loc) or "(top level)"
        for n in range(len(loc), -1, -1):
            if loc[:n] in overridden:
                return f"--set {overridden[loc[:n]]}: {field}"
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                return f"{source}:{lines[loc[:n]]}: {field}"
        return f"{source}: {field}"

    model = _recipe_model()
    _check_numbers(raw, where)
    _check_stage_kinds(raw, where)
    if "task" in raw:
        from .tasks import normalize_task_section

        raw["task"] = normalize_task_section(raw["task"], where(("task",)))
    if isinstance(raw.get("stages"), list) and raw["stages"] and raw["stages"][-1].get("kind") != "export":
        raw["stages"].append({"kind": "export"})  # every run ships a file; an implicit export uses the defaults
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, model, where) from None
    recipe = Recipe(config, source, text, where)
    _check_semantics(recipe, where)
    return recipe


def _check_numbers(raw: dict, where) -> None:
    """NaN and infinity mean nothing in any recipe field (null switches a limit off), and a count beyond 2**53
    only overflows later, deep inside a stage; refuse both here, naming the field."""
    bad = non_finite(raw)
    if bad is not None:
        raise UserError("not a finite number (NaN or infinity)", where=where(bad),
                        fix="use a finite number, or null where the field allows switching it off")
    stack: list[tuple[tuple, Any]] = [((), raw)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > INT_LIMIT:
            raise UserError(f"number too large ({obj:.3g})", where=where(path), fix="use a realistic value")
        if isinstance(obj, dict):
            stack.extend(((*path, k), v) for k, v in obj.items())
        elif isinstance(obj, list):
            stack.extend(((*path, i), v) for i, v in enumerate(obj))


def _check_stage_kinds(raw: dict, where) -> None:
    stages = load_stages()
    listed = raw.get("stages")
    for i, stage in enumerate(listed if isinstance(listed, list) else []):
        if not isinstance(stage, dict) or not isinstance(stage.get("kind"), str):
            raise UserError("each stage needs a kind", where=where(("stages", i)), fix=f"add kind: one of {', '.join(sorted(stages))}")
        if stage["kind"] not in stages:
            raise UserError(f'unknown stage kind "{stage["kind"]}"{did_you_mean(stage["kind"], stages)}',
                            where=where(("stages", i, "kind")), fix=f"use one of: {', '.join(sorted(stages))}")


def _fields_at(model: type[BaseModel], loc: tuple, raw_kinds: dict[int, str]) -> list[str]:
    """The field names allowed at `loc` (for 'did you mean'), walking nested models and the stage union."""
    stages = load_stages()
    current: Any = model
    i = 0
    while i < len(loc):
        part = loc[i]
        if current is None or not hasattr(current, "model_fields"):
            return []
        if part == "stages" and current.__name__ == "Recipe":
            idx = loc[i + 1] if i + 1 < len(loc) else None
            kind = raw_kinds.get(idx)
            current = stages[kind].config if kind in stages else None
            i += 3 if (i + 2 < len(loc) and loc[i + 2] == kind) else 2
            continue
        field = current.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        current = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        i += 1
    return list(current.model_fields) if current is not None and hasattr(current, "model_fields") else []


def _explain(exc: ValidationError, model: type[BaseModel], where) -> UserError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    raw_kinds = {}
    inp = err.get("input")
    # drop the union tag pydantic inserts after the stage index: ("stages", 0, "distill", "x") → ("stages", 0, "x")
    if len(loc) >= 3 and loc[0] == "stages" and isinstance(loc[1], int) and isinstance(loc[2], str) and loc[2] in load_stages():
        raw_kinds[loc[1]] = loc[2]
        loc = (*loc[:2], *loc[3:])
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1], raw_kinds)
        return UserError(f'unknown key "{loc[-1]}"{did_you_mean(loc[-1], allowed)}', where=where(loc),
                         fix=f"allowed keys here: {', '.join(allowed)}" if allowed else "remove the key")
    if loc == ("name",) and err["type"] == "string_pattern_mismatch":
        return UserError(f"a run name is one folder name (letters, digits, . _ -, starting with a letter or digit), got {inp!r}",
                         where=where(loc), fix="rename the run, e.g. mobile_small; choose where it goes with --out")
    if err["type"] == "missing":
        return UserError("required key is missing", where=where(loc), fix="add it (see the recipe reference in the README)")
    msg = err["msg"].removeprefix("Value error, ")
    shown = f" (got {inp!r})" if inp is not None and not isinstance(inp, dict | list) else ""
    return UserError(f"{msg}{shown}", where=where(loc), fix="see the recipe reference in the README")


def _check_semantics(recipe: Recipe, where) -> None:
    """Checks beyond types: files exist, model specs name real arguments, stage order can work, targets exist."""
    from .models import check_model_config
    from .target import load_target

    cfg = recipe.config
    stages = load_stages()
    check_model_config(cfg.teacher.model, where(("teacher", "model")))
    if cfg.teacher.checkpoint and not Path(cfg.teacher.checkpoint).expanduser().exists():
        raise UserError(f"file not found: {cfg.teacher.checkpoint}", where=where(("teacher", "checkpoint")),
                        fix="check the path (relative paths start from the current directory), or train the teacher with teacher.train")
    if cfg.data.path and not Path(cfg.data.path).expanduser().exists():
        raise UserError(f"path not found: {cfg.data.path}", where=where(("data", "path")),
                        fix="check the path (relative paths start from the current directory)")
    previous = START
    for i, stage in enumerate(cfg.stages):
        spec = stages[stage.kind]
        if previous not in spec.may_follow:
            allowed = ", ".join(sorted(k for k in spec.may_follow))
            raise UserError(f'a "{stage.kind}" stage cannot follow "{previous}"', where=where(("stages", i, "kind")),
                            fix=f'"{stage.kind}" may follow: {allowed}; reorder the stages')
        problem = stage.check() if callable(getattr(stage, "check", None)) else None
        if problem is None and callable(getattr(stage, "check_recipe", None)):
            problem = stage.check_recipe(cfg)  # checks that need the whole recipe (e.g. the task)
        if problem:
            field, message, fix = problem
            raise UserError(message, where=where(("stages", i, *field)), fix=fix)
        for key in ("student", "model"):
            sub = getattr(stage, key, None)
            if isinstance(sub, dict) and "search" not in sub:  # a student search checks its candidates itself
                check_model_config(sub, where(("stages", i, key)))
        previous = stage.kind
    for i, target in enumerate(cfg.targets):
        try:
            load_target(target)
        except UserError as exc:
            raise UserError(exc.message, where=where(("targets", i)), fix=exc.fix) from None
