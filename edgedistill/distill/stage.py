"""The `distill` stage: train a student (or a chain of them) against the teacher(s).

The loss is a weighted sum of terms chosen in the recipe (logit divergences, label cross-entropy, feature
losses); without `losses`, it is Hinton KD: `alpha`·T²·KL + (1 − `alpha`)·CE, as in the first version of
this stage. `strategy` decides which students are trained and by whom (see strategies.py); every step
(generation, assistant, student) is reported in `details["steps"]`.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ..config import Strict, TrainConfig
from ..models import build_model
from ..stages import START, register_stage
from ..state import ModelState, RunContext, StageRecord
from .augment import AugmentConfig
from .cache import CacheConfig
from .schedules import TemperatureSchedule
from .strategies import StrategyConfig

LOGIT_TERMS = ("kl", "rkl", "js", "skew_kl", "skew_rkl", "ce", "logits_kl")
OUTPUT_TERMS = ("embedding_mse", "embedding_cosine", "embedding_relation")  # the task's output vectors (text_embedding)
PAIR_TERMS = ("cosent", "cosine_regression")  # labelled sentence pairs (pair_losses.py): a task stage on sts_pairs
PAIR_DATA = ("sts_pairs",)  # loaders whose training split is stacked pairs with gold scores
# inside a Hugging Face encoder (transformer_terms.py); logits_kl is the classifier-logit term of the same family
TRANSFORMER_TERMS = ("hidden_mse", "attention_kl", "value_relation_kl", "minilmv2_relations")
TEXT_ONLY_TERMS = (*TRANSFORMER_TERMS, "logits_kl")
FEATURE_TERMS = ("mse", "cosine", "attention", "rkd_distance", "rkd_angle")
# Sparse Logit Sampling gives an unbiased estimate of the teacher's probabilities; only losses whose gradient
# is linear in them (forward KL, label CE) stay unbiased. rkl is refused for every sparse mode (log 0).
BIASED_UNDER_SAMPLING = ("js", "skew_kl", "skew_rkl")


class LossTerm(Strict):
    """One weighted term of the loss. Feature terms name their layers, or ask for `evenly` spaced ones."""

    # extra keys are the term's own settings, validated by its registered class (terms/), e.g. taid's t_start
    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(
        description="a registered term (docs/distillation.md lists them all). logit: kl rkl js skew_kl skew_rkl ce "
                    "taid ofa uskd; feature: mse cosine attention rkd_distance rkd_angle crd; "
                    "output (text_embedding, the default there): embedding_mse embedding_cosine embedding_relation; "
                    "transformer (Hugging Face text models): hidden_mse attention_kl value_relation_kl "
                    "minilmv2_relations, and logits_kl (text_classification); labelled pairs (a stage with "
                    "data: {name: sts_pairs}): cosent cosine_regression")
    weight: float = Field(1.0, ge=0, description="multiplier of this term in the sum")
    skew: float = Field(0.1, ge=0, le=1, description="skew_kl / skew_rkl: the mixing weight a")
    student_layers: list[int | str] | None = Field(
        None, description="feature terms: student module names (model.named_modules()); transformer terms: "
                          "student encoder layer indices (0 = first layer; default: uniform for hidden_mse, last for the others)")
    teacher_layers: list[int | str] | None = Field(
        None, description="feature terms: teacher module names; transformer terms: teacher layer indices; paired in order")
    evenly: int | None = Field(None, ge=1, le=64, description="feature terms: pick this many evenly spaced layers in each network")
    relation_heads: int | None = Field(
        None, ge=1, le=1024, description="minilmv2_relations: relation heads (must divide both attention widths; default: the teacher's head count)")
    scale: float | None = Field(None, gt=0, le=1000, description="cosent: the scale λ of the cosine differences (default 20)")
    score_range: list[float] | None = Field(
        None, min_length=2, max_length=2, description="cosine_regression: [lo, hi] of the gold scores, mapped onto cosines 0..1 (default [0, 5], STS)")

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from .terms import term_names

        names = term_names()
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise ValueError(f'unknown loss term "{value}"{hint}; registered terms: {", ".join(names)}')
        return value

    def param(self, name: str) -> Any:
        """A term setting with its default (`scale` 20, `score_range` [0, 5])."""
        value = getattr(self, name)
        return value if value is not None else {"scale": 20.0, "score_range": [0.0, 5.0]}[name]


class DistillConfig(Strict):
    student: dict[str, Any] | None = Field(
        None, description="model spec of a new student; omit to keep training the current model; "
                          "{search: {candidates: [...], latency_budget_ms | latency_ratio}} picks one without training (DisWOT, search.py)")
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature T (loss scaled by T²); the start of a schedule")
    temperature_schedule: TemperatureSchedule = Field(default_factory=TemperatureSchedule, description="how T changes during training")
    alpha: float | None = Field(None, ge=0, le=1, description="without `losses`: weight of the KD term (default 0.9); 1 − alpha goes to label cross-entropy")
    losses: list[LossTerm] | None = Field(None, description="weighted loss terms; default: [kl: alpha, ce: 1 − alpha]")
    standardize: bool = Field(False, description="logit standardization: z-score teacher and student logits before the softmax")
    strategy: StrategyConfig = Field(default_factory=StrategyConfig, description="which students are trained, and by whom")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="the teacher-output cache")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="random augmentation of training inputs")
    train: TrainConfig = Field(default_factory=TrainConfig, description="training of each student")
    data: dict[str, Any] | None = Field(
        None, description="this stage's own training data (progressive distillation), merged over the recipe's "
                          "data: e.g. {name: text_corpus, path: corpus.txt}; validation and evaluation stay on the recipe's data")

    def loss_terms(self, task: Any = None) -> list[LossTerm]:
        """The recipe's terms; by default Hinton KD, or the task's own default (MSE to the teacher's embedding)."""
        if self.losses is not None:
            return self.losses
        default = getattr(task, "default_distill_loss", None)
        if default:
            return [LossTerm(name=default, weight=1.0)]
        alpha = 0.9 if self.alpha is None else self.alpha
        terms = [LossTerm(name="kl", weight=alpha)]
        if alpha < 1:
            terms.append(LossTerm(name="ce", weight=1 - alpha))
        return terms

    def check(self) -> tuple[tuple, str, str] | None:
        """Combinations that cannot work are refused at validation time (field path, message, fix)."""
        if self.losses is not None:
            if not self.losses:
                return (("losses",), "the loss list is empty", "add at least one term, e.g. {name: kl, weight: 1.0}")
            if self.alpha is not None:
                return (("alpha",), "alpha only applies when `losses` is not given",
                        "remove alpha (or --set stages.N.alpha=null) and set the weights of the kl and ce terms")
        if isinstance(self.student, dict) and "search" in self.student:
            from .search import check_search

            problem = check_search(self.student)
            if problem is None and self.strategy.kind != "kd":
                problem = (("student", "search"), f"the student search picks one student for strategy kd, not {self.strategy.kind}",
                           "use strategy kind: kd, or give one student spec")
            if problem:
                return problem
        sparse = self.cache.enabled and self.cache.mode != "dense"
        from .terms import TERMS

        for i, term in enumerate(self.loss_terms()):
            cls = TERMS[term.name]
            problem = cls.check_settings(term) or cls.check(term, self)
            if problem:
                return (("losses", i, *problem[0]), problem[1], problem[2])
            has_layers = term.student_layers is not None or term.teacher_layers is not None
            if term.relation_heads is not None and term.name != "minilmv2_relations":
                return (("losses", i, "relation_heads"), "relation_heads only applies to minilmv2_relations",
                        "remove relation_heads from this term")
            for field, owner in (("scale", "cosent"), ("score_range", "cosine_regression")):
                if getattr(term, field) is not None and term.name != owner:
                    return (("losses", i, field), f"{field} only applies to {owner}", f"remove {field} from this term")
            if term.score_range is not None and not term.score_range[0] < term.score_range[1]:
                return (("losses", i, "score_range"), f"score_range {term.score_range} is not [lo, hi] with lo < hi",
                        "give the lowest and the highest gold score, e.g. [0, 5] for STS")
            if term.name in PAIR_TERMS and (has_layers or term.evenly):
                return (("losses", i), f'"{term.name}" compares the two sentences\' embeddings and takes no layers',
                        "remove student_layers/teacher_layers/evenly")
            if term.name in TRANSFORMER_TERMS:
                problem = _check_transformer_layers(term)
                if problem:
                    return (("losses", i, *problem[0]), problem[1], problem[2])
                continue
            if term.name in (*LOGIT_TERMS, *OUTPUT_TERMS) and (has_layers or term.evenly):
                return (("losses", i), f'"{term.name}" compares the model outputs and takes no layers',
                        "remove student_layers/teacher_layers/evenly, or use a feature loss")
            if term.name in FEATURE_TERMS:
                if bool(term.evenly) == has_layers:
                    return (("losses", i), f'feature loss "{term.name}" needs either `evenly: N` or student_layers + teacher_layers',
                            "e.g. {name: mse, evenly: 2} or {name: mse, student_layers: ['0.2'], teacher_layers: ['0.5']}")
                if has_layers and len(term.student_layers or []) != len(term.teacher_layers or []):
                    return (("losses", i, "teacher_layers"), "student_layers and teacher_layers must have the same length",
                            "pair each student layer with one teacher layer")
                if any(not isinstance(n, str) for n in (*(term.student_layers or []), *(term.teacher_layers or []))):
                    return (("losses", i, "student_layers"), f'feature loss "{term.name}" names layers by module name',
                            "quote the names, e.g. student_layers: ['0.2'] (indices are for transformer terms)")
            if term.name in OUTPUT_TERMS and sparse:
                return (("cache", "mode"), f'"{term.name}" needs the teacher\'s full output, not {self.cache.mode}',
                        "use cache.mode: dense")
            if term.name == "rkl" and sparse:
                return (("cache", "mode"), f"reverse KL needs dense teacher probabilities, not {self.cache.mode}",
                        "use cache.mode: dense, or skew_rkl (which mixes the student in and stays finite)")
            if term.name in BIASED_UNDER_SAMPLING and self.cache.enabled and self.cache.mode == "sampled":
                return (("cache", "mode"), f'"{term.name}" is biased under sampled teacher targets: its gradient is not '
                        "linear in the teacher probabilities, so their unbiased estimate gives a biased gradient",
                        "use cache.mode: dense or topk, or the kl/ce losses (unbiased under sampling)")
            if cls.dense_teacher and sparse:
                return (("cache", "mode"), f'"{term.name}" needs the teacher\'s full distribution, not {self.cache.mode}',
                        "use cache.mode: dense")
        if self.cache.enabled and self.cache.mode == "sampled" and self.temperature_schedule.kind != "constant":
            return (("temperature_schedule", "kind"), "sampled teacher targets are drawn at one fixed temperature",
                    "use temperature_schedule.kind: constant, or cache.mode: dense/topk")
        if self.augment.shift and self.augment.token_dropout:
            return (("augment", "token_dropout"), "shift moves images and token_dropout drops text tokens: one stage "
                    "trains on one kind of input", "set only the one that fits the data")
        if self.augment.token_span > 1 and not self.augment.token_dropout:
            return (("augment", "token_span"), "token_span applies to token_dropout, which is 0 (off)",
                    "set augment.token_dropout (e.g. 0.1), or remove token_span")
        if self.augment.active and self.augment.teacher_sees == "original":
            spatial = [t.name for t in self.loss_terms() if t.name in (*FEATURE_TERMS, *TRANSFORMER_TERMS)]
            if spatial:
                return (("augment", "teacher_sees"), f'"{spatial[0]}" compares activations position by position, so '
                        "the teacher must see the student's (augmented) input",
                        "use teacher_sees: augmented, or only output terms (kl, ce, ...)")
        problem = self.strategy.check()
        if problem:
            return (("strategy", *problem[0]), problem[1], problem[2])
        from ..errors import UserError
        from ..models import check_model_config

        for k, t in enumerate(self.strategy.teachers):
            if t.checkpoint and not Path(t.checkpoint).expanduser().exists():
                return (("strategy", "teachers", k, "checkpoint"), f"file not found: {t.checkpoint}",
                        "check the path (relative paths start from the current directory), or train it with train: {...}")
        specs = [(("strategy", "teachers", k, "model"), t.model) for k, t in enumerate(self.strategy.teachers)]
        if isinstance(self.strategy.assistants, list):
            specs += [(("strategy", "assistants", k), s) for k, s in enumerate(self.strategy.assistants)]
        for field, spec in specs:
            try:
                check_model_config(spec, ".".join(map(str, field)))
            except UserError as exc:
                return (field, exc.message, exc.fix or "")
        return None

    def _check_pairs(self, recipe: Any, terms: list[LossTerm]) -> tuple[tuple, str, str] | None:
        """Pair terms need a stage trained on labelled pairs (sts_pairs); such a stage needs a text_embedding task."""
        data_name = (self.data or {}).get("name", recipe.data.name)
        on_pairs = data_name in PAIR_DATA
        for i, term in enumerate(terms):
            if term.name in PAIR_TERMS and not on_pairs:
                return (("losses", i, "name"), f'"{term.name}" learns from labelled sentence pairs, but this stage '
                        f'trains on "{data_name}"', "give the stage data: {name: sts_pairs} (the recipe's STS "
                        "train pairs with their gold scores), or drop this term")
        if on_pairs and getattr(recipe.task, "kind", None) != "text_embedding":
            return (("data", "name"), f"{data_name} trains a sentence embedding; the task is "
                    f'"{getattr(recipe.task, "kind", "?")}"', "use task: text_embedding")
        if on_pairs and self.augment.active:
            return (("augment",), "augmentation applies to one text (or image) a row, not to stacked pairs",
                    "augment the general (corpus) stage instead")
        return None

    def check_recipe(self, recipe: Any) -> tuple[tuple, str, str] | None:
        """Checks that need the whole recipe: transformer terms need a text task and Hugging Face models whose
        layers exist; the stage's own data must exist and suit the losses."""
        from ..tasks import load_tasks
        from ..tasks.text_base import TextTask
        from .transformer_terms import check_indices, is_transformer_spec, spec_layer_count

        task_cls = load_tasks().get(getattr(recipe.task, "kind", "image_classification"))
        index = next((k for k, s in enumerate(recipe.stages) if s is self), len(recipe.stages))
        terms = self.loss_terms(task_cls)
        if self.data is not None:
            from .stage_data import check_stage_data

            problem = check_stage_data(recipe.data, self.data, [t.name for t in terms if t.name == "ce"])
            if problem:
                return problem
        problem = self._check_pairs(recipe, terms)
        if problem:
            return problem
        if self.augment.token_dropout and (task_cls is None or not issubclass(task_cls, TextTask)):
            return (("augment", "token_dropout"), f'token_dropout drops text tokens; the task '
                    f'"{getattr(task_cls, "kind", "?")}" is not a text task', "use augment.shift for images, or remove it")
        if task_cls is not None and getattr(task_cls, "default_distill_loss", None):
            for i, term in enumerate(terms):
                if term.name in LOGIT_TERMS:
                    return (("losses", i, "name"), f'{task_cls.kind} has no class logits: "{term.name}" does not apply',
                            "use embedding_mse or embedding_cosine (the default), or transformer terms such as hidden_mse")
        inner = [(i, t) for i, t in enumerate(terms) if t.name in TEXT_ONLY_TERMS]
        if not inner:
            return None
        i, first = inner[0]
        if task_cls is None or not issubclass(task_cls, TextTask):
            return (("losses", i, "name"), f'"{first.name}" is a transformer loss; the task '
                    f'"{getattr(task_cls, "kind", "?")}" is not a text task',
                    "use logit or feature losses (kl, ce, mse, ...) here, or task: text_embedding / text_classification")
        student = self.student  # none: the model of the previous stages (their last student, or the teacher)
        if student is None:
            student = next((s.student for s in reversed(recipe.stages[:index]) if isinstance(getattr(s, "student", None), dict)),
                           recipe.teacher.model)
        for what, spec in (("student", student), ("teacher", recipe.teacher.model)):
            if not is_transformer_spec(spec):
                field = ("student",) if what == "student" and self.student is not None else ("losses", i, "name")
                return (field, f'"{first.name}" needs Hugging Face transformers; the {what} model '
                        f'"{spec.get("name") if isinstance(spec, dict) else spec}" is not one',
                        "use Hugging Face models (name: hf or hf_derived), or logit/feature losses")
        t_count = spec_layer_count(recipe.teacher.model, None)
        s_count = spec_layer_count(student, t_count)
        for i, term in inner:
            for key, layers, count, who in (("student_layers", term.student_layers, s_count, "student"),
                                            ("teacher_layers", term.teacher_layers, t_count, "teacher")):
                if layers is not None and count is not None:
                    problem = check_indices(layers, count, who)
                    if problem:
                        return (("losses", i, key), *problem)
        return None


def _check_transformer_layers(term: LossTerm) -> tuple[tuple, str, str] | None:
    """Transformer terms take encoder layer indices, both lists or neither (the default mapping), no `evenly`."""
    if term.evenly:
        return (("evenly",), f'"{term.name}" maps encoder layers by index, not `evenly`',
                "remove evenly; give student_layers + teacher_layers, or neither for the default mapping")
    if (term.student_layers is None) != (term.teacher_layers is None):
        return (("teacher_layers" if term.teacher_layers is None else "student_layers",),
                "give both student_layers and teacher_layers, or neither (the default mapping)",
                "e.g. student_layers: [0, 1, 2], teacher_layers: [1, 3, 5]")
    if term.student_layers is None:
        return None
    for key in ("student_layers", "teacher_layers"):
        layers = getattr(term, key)
        if not layers or any(not isinstance(n, int) or n < 0 for n in layers):
            return ((key,), f"{key} of {term.name} must be a non-empty list of encoder layer indices (0, 1, ...)",
                    "e.g. student_layers: [0, 1, 2], teacher_layers: [1, 3, 5]")
    if len(term.student_layers) != len(term.teacher_layers):
        return (("teacher_layers",), "student_layers and teacher_layers must have the same length",
                "pair each student layer with one teacher layer")
    return None


@register_stage("distill", DistillConfig, may_follow={START, "distill", "prune"},
                summary="train a student against the teacher(s): logit/feature losses, born-again, assistants, multi-teacher")
def run_distill(state: ModelState, cfg: DistillConfig, ctx: RunContext) -> ModelState:
    import torch

    from ..teacher import prepare_teacher
    from .kd import train_student
    from .strategies import plan_steps

    t0 = time.perf_counter()
    data, recipe = ctx.data, ctx.recipe.config
    strategy = cfg.strategy
    from .search import resolve_student

    student_spec, search_report = resolve_student(cfg.student, state, ctx)  # DisWOT picks it when `student: {search}`
    steps = plan_steps(strategy, student_spec, state.spec, state.teacher_spec)

    teachers, weights, teacher_info = [state.teacher], [1.0], []
    for k, extra in enumerate(strategy.teachers if strategy.kind == "multi_teacher" else []):
        model, rec = prepare_teacher(extra, data, ctx.task, seed=recipe.seed + 1000 + k, batch_size=recipe.data.batch_size,
                                     stage_dir=ctx.stage_dir / f"teacher-{k + 1}", resume=ctx.resume,
                                     where=f"stages.{ctx.index - 1}.strategy.teachers.{k}")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        teachers.append(model)
        weights.append(1.0)
        teacher_info.append({"name": f"teacher {k + 1}", "spec": extra.model, "params": rec.details["params"],
                             "val_metric": rec.metric_after})
    if strategy.kind == "multi_teacher" and strategy.weights is not None:
        weights = list(strategy.weights)

    train_split = None  # the recipe's training data, unless this stage names its own (progressive distillation)
    if cfg.data is not None:
        from .stage_data import load_stage_train

        train_split = load_stage_train(recipe.data, cfg.data, ctx.task, where=f"stages.{ctx.index - 1}.data")
    trained: list[Any] = []
    trainable: dict[int, list[bool]] = {}
    reports: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if last and cfg.student is None and strategy.kind in ("kd", "multi_teacher", "assistants"):
            student = state.model  # "omit student to keep training the current model"
        else:
            torch.manual_seed(recipe.seed + i)  # a student's initial weights depend only on the seed and its step
            student = build_model(step.spec, data.input_shape, data.num_classes, task=ctx.task, teacher=state.teacher)
        step_teachers = teachers if step.teacher == -1 else [trained[step.teacher].eval()]
        for p in (step_teachers[0].parameters() if step.teacher != -1 else []):
            p.requires_grad_(False)
        # what a builder froze stays frozen, in training and afterwards (only the all-frozen copy of the teacher
        # that the first stage receives as "the current model" is made trainable)
        flags = [p.requires_grad for p in student.parameters()]
        trainable[id(student)] = flags if any(flags) or student is not state.model else [True] * len(flags)
        _set_trainable(student, trainable[id(student)])
        info = train_student(step.name, student, step_teachers, weights if step.teacher == -1 else [1.0], cfg, ctx,
                             seed=recipe.seed + i, checkpoint=ctx.stage_dir / f"train_state-{i}.pt", train=train_split)
        trained.append(student)
        taught_by = "teacher" if step.teacher == -1 else steps[step.teacher].name
        if step.teacher == -1 and len(teachers) > 1:
            taught_by = ["teacher", *(t["name"] for t in teacher_info)]
        reports.append({"name": step.name, "role": step.role, "spec": step.spec, "teacher": taught_by, **info})

    chosen = len(steps) - 1
    if strategy.kind == "born_again" and strategy.keep == "best":
        sign = 1 if ctx.task.metric.higher_is_better else -1
        chosen = max(range(len(steps)), key=lambda j: sign * reports[j]["val_metric"])
    for model in trained:  # students used as teachers of later steps were frozen meanwhile
        _set_trainable(model, trainable[id(model)])
    student, spec = trained[chosen], steps[chosen].spec
    if chosen == len(steps) - 1 and cfg.student is None and strategy.kind in ("kd", "multi_teacher", "assistants"):
        spec = state.spec
    final = reports[chosen]
    record = StageRecord(
        index=ctx.index, kind="distill", settings=cfg.model_dump(mode="json"), seconds=time.perf_counter() - t0,
        metric_after=final["val_metric"],
        details={"strategy": strategy.kind, "params": final["params"], "best_epoch": final["best_epoch"],
                 "epochs_run": final["epochs_run"], "history": final["history"],
                 "resumed_from_epoch": final["resumed_from_epoch"], "chosen_step": steps[chosen].name,
                 "teachers": teacher_info, "teacher_weights": weights, "world_size": final["world_size"],
                 "cache": final["cache"], "train_rows": final["train_rows"],
                 "train_data": dict(cfg.data) if cfg.data is not None else "recipe", "steps": [{k: v for k, v in r.items() if k != "history"} for r in reports],
                 **({"student_search": search_report} if search_report else {})},
    )
    return ModelState(student, spec, state.teacher, state.teacher_spec, None, [*state.lineage, record])


def _set_trainable(model: Any, flags: list[bool]) -> None:
    for p, flag in zip(model.parameters(), flags, strict=True):
        p.requires_grad_(flag)
