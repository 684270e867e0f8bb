"""OFA-KD (Hao et al., NeurIPS 2023): distillation between architectures of different families.

A teacher's features and a student's live in different spaces when one is a CNN and the other a
transformer or an MLP-Mixer, so OFA compares none of them. Instead every chosen student stage gets a
*branch*: a small projector that turns the stage's features into class logits, and each branch (and the
student's own head) is trained against the teacher's probabilities with the OFA loss

    L = −Σ_c [(p_t,c + 𝟙_y,c)^ε − 𝟙_y,c] · log p_s,c

(p_t: teacher probabilities at T, p_s: the branch's, 𝟙_y: one-hot label). With ε = 1 it is the teacher's
cross-entropy; ε > 1 raises the target class's weight more as the teacher is more confident in it
("adaptive target enhancement"). Only the teacher's output is read, so any teacher family works.

Projectors follow the official code's shape (github.com/Hao840/OFAKD, distillers/ofa.py), sized for small
students and built from the student alone (the official code widens to the teacher's final width; here
that would read the teacher's internals, so the width is the student's widest chosen stage):
- a CNN feature map (B, C, H, W): as many stride-2 separable-conv blocks as stages remain after this one
  (channels doubling, the last to `width`; the final stage gets a 1×1 conv), average pool, linear;
- a token sequence (B, N, D): a linear to `width`, max(stages remaining, 1) MLP-Mixer blocks (attention-free,
  where the official code uses ViT blocks), LayerNorm, mean over tokens, linear;
- a flat vector (B, D): linear, GELU, linear.
Normalisation is per sample (GroupNorm with one group instead of BatchNorm), so a last batch of one row
still trains. The branches are trained with the student and never exported.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models._tokens import MixerBlock
from .features import Recorder, check_layers, evenly_spaced


def ofa_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor, eps: float,
             temperature: float = 1.0) -> torch.Tensor:
    """−Σ_c [(p_t,c + 𝟙_y,c)^ε − 𝟙_y,c] · log softmax(logits / T)_c, batch mean."""
    mask = F.one_hot(labels.long(), logits.shape[-1]).to(logits.dtype)
    weight = (teacher_probs.to(logits.dtype) + mask).pow(eps) - mask
    return -(weight * F.log_softmax(logits / temperature, dim=-1)).sum(dim=-1).mean()


# ---------------------------------------------------------------- which stages get a branch


def _block_list(model: nn.Module, outputs: dict[str, torch.Tensor]) -> list[str]:
    """The longest ModuleList whose every entry returns a token sequence (B, N, D): a transformer's or a
    mixer's blocks, whose outputs are the residual stream."""
    best: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) <= len(best):
            continue
        names = [f"{name}.{i}" if name else str(i) for i in range(len(module))]
        if all(n in outputs and outputs[n].dim() == 3 for n in names):
            best = names
    return best


def stage_layers(model: nn.Module, count: int, probe: Callable[[nn.Module], object]) -> list[str]:
    """`count` stages spread evenly over the student, the last one its deepest: blocks of a token model, else
    (CNNs) the activations that keep a spatial axis (`features.evenly_spaced`)."""
    names = [n for n, _ in model.named_modules() if n]
    rec = Recorder(model, names)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probe(model)
    finally:
        model.train(was_training)
        rec.remove()
    blocks = _block_list(model, rec.outputs)
    if not blocks:
        return evenly_spaced(model, count, probe)
    n = len(blocks)
    count = min(count, n)
    return [blocks[round((i + 1) * n / count) - 1] for i in range(count)]


def choose_stages(model: nn.Module, named: list[str] | None, count: int, probe: Callable[[nn.Module], object],
                  where: str) -> list[str]:
    """Named layers (checked against the model, nearest names on a typo) or `count` evenly spaced stages."""
    if named:
        check_layers(model, named, f"{where}.student_layers")
        return list(named)
    return stage_layers(model, count, probe)


# ---------------------------------------------------------------- projectors


class SepConv(nn.Sequential):
    """Depthwise-separable 3×3 conv (stride 2), twice, each with per-sample normalisation and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride=2, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cin, 1, bias=False),
            nn.GroupNorm(1, cin), nn.ReLU(),
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False),
            nn.GroupNorm(1, cout), nn.ReLU())


class _MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def projector(shape: tuple[int, ...], width: int, num_classes: int, remaining: int) -> nn.Module:
    """A branch from a student feature of `shape` (batch first) to class logits; `remaining` = stages after it."""
    if len(shape) == 4:
        cin = shape[1]
        if remaining == 0:
            body: list[nn.Module] = [nn.Conv2d(cin, width, 1)]
        else:
            body = []
            for i in range(remaining):
                cout = width if i == remaining - 1 else cin * 2
                body.append(SepConv(cin, cout))
                cin = cout
        return nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    if len(shape) == 3:
        tokens, dim = shape[1], shape[2]
        blocks = [MixerBlock(tokens, width, max(8, tokens // 2), 2 * width) for _ in range(max(remaining, 1))]
        return nn.Sequential(nn.Linear(dim, width), *blocks, nn.LayerNorm(width), _MeanTokens(),
                             nn.Linear(width, num_classes))
    if len(shape) == 2:
        return nn.Sequential(nn.Linear(shape[1], width), nn.GELU(), nn.Linear(width, num_classes))
    raise UserError(f"an OFA branch needs a feature map (B, C, H, W), a token sequence (B, N, D) or a vector "
                    f"(B, D); this layer gives {list(shape)}", where="losses.student_layers",
                    fix="name the output of a block or an activation, or omit student_layers")


def feature_width(shape: tuple[int, ...]) -> int:
    """Channels of a feature map, width of a token or a vector."""
    return int(shape[1] if len(shape) in (2, 4) else shape[-1])


class Branches(nn.Module):
    """One projector per chosen student stage (keys: the layer names with dots replaced)."""

    def __init__(self, layers: list[str], shapes: dict[str, tuple[int, ...]], num_classes: int,
                 width: int | None = None) -> None:
        super().__init__()
        self.layers = list(layers)
        width = width or max(feature_width(shapes[n]) for n in layers)
        self.width = width
        n = len(layers)
        self.projectors = nn.ModuleDict({
            _key(name): projector(shapes[name], width, num_classes, n - 1 - i) for i, name in enumerate(layers)})

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [self.projectors[_key(name)](features[name]) for name in self.layers]


def _key(name: str) -> str:
    return name.replace(".", "_")
