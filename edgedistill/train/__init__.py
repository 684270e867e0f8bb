"""The shared training loop (teacher training, distillation, pruning recovery, QAT) and its DDP helpers.

It lives outside `distill/` so every stage can train without reaching into another stage's package; the
loss a stage trains with comes from the one loss registry (`distill/losses.py`, `train/objective.py`).
"""

from .loop import FitResult, fit, lr_factor, make_optimizer, seed_everything
from .objective import distillation_objective, kd_loss

__all__ = ["FitResult", "distillation_objective", "fit", "kd_loss", "lr_factor", "make_optimizer", "seed_everything"]
