"""Config pieces shared by several recipe sections (kept apart so stage modules and recipe.py do not cycle)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Recipe sections reject unknown keys, so typos fail validation instead of being silently ignored, and
    values of the wrong type instead of coercing them (`epochs: true` or `epochs: "3"` is a mistake, not 1 or 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TrainConfig(Strict):
    """How a model is trained (teacher training, distillation, recovery after pruning, QAT)."""

    epochs: int = Field(10, ge=1, le=100000, description="passes over the training split")
    lr: float = Field(3e-3, gt=0, le=10, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="decoupled weight decay (AdamW) or L2 (SGD)")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="SGD uses Nesterov momentum 0.9")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate decay over all steps")
    warmup_epochs: int = Field(0, ge=0, description="linear learning-rate warm-up")
    grad_clip: float | None = Field(5.0, gt=0, description="max gradient norm; null disables clipping")
    patience: int | None = Field(None, ge=1, description="early stopping: epochs without validation improvement")
    batch_size: int | None = Field(None, ge=1, description="defaults to data.batch_size")
    max_steps: int | None = Field(None, ge=1, le=10**9, description="train this many optimizer steps (overrides epochs; for data too large or of unknown length to count in epochs)")
    eval_every: int | None = Field(None, ge=1, description="validate (and keep the best weights) every N steps instead of every epoch")
    checkpoint_every: int | None = Field(None, ge=1, description="write the --resume checkpoint every N steps (mid-epoch, with the sampler's position) as well as at each validation")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast precision of the forward pass; bf16/fp16 are refused where this CPU has no support")


class TeacherConfig(Strict):
    """A teacher: the recipe's own, or an extra one for multi-teacher distillation."""

    model: dict[str, Any] = Field(description="model spec: {name: cnn, channels: [...]}")
    checkpoint: str | None = Field(None, description=".safetensors or a torch state_dict file")
    train: TrainConfig | None = Field(None, description="train it here with the task's label loss when there is no checkpoint; with neither, the builder's weights are used (pretrained hf models)")

    @model_validator(mode="after")
    def _one_source(self) -> TeacherConfig:
        if self.checkpoint is not None and self.train is not None:
            raise ValueError("give at most one of checkpoint or train (set the other to null); with neither, the "
                             "model keeps the weights its builder gives it (a pretrained `hf` path or package)")
        return self
