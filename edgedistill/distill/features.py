"""Feature distillation, kept in MMRazor's four parts.

- *recorders* capture named modules' outputs with forward hooks, without touching model code
  (as torchdistill does); `name:input` records a module's input instead (e.g. the penultimate features a
  classifier's last `nn.Linear` reads);
- *connectors* map a student feature to the teacher's shape (1×1 conv or linear, plus resizing) when the
  shapes differ; they are trained with the student through `fit(extra_params=...)` but never attached to
  it, so they are absent from the exported file;
- *losses* compare two features: MSE, cosine, attention transfer (Zagoruyko & Komodakis 2017), relational
  KD distance and angle (Park et al. 2019);
- a *mapping* (a loss term in the recipe) says which student layer feeds which teacher layer and loss.

"Evenly spaced layers" picks N activations spread over each network's depth, since which layers are
matched matters little (intermediate-layer matching studies).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

# ---------------------------------------------------------------- recorders


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


INPUT_SUFFIX = ":input"  # "fc:input": record what module "fc" receives, not what it returns


def module_name(name: str) -> str:
    """The module a recorded name refers to ("fc:input" → "fc")."""
    return name.removesuffix(INPUT_SUFFIX)


def check_layers(model: nn.Module, names: list[str], where: str) -> None:
    """A wrong layer name fails with the closest real names (and the first few, when nothing is close)."""
    real = layer_names(model)
    for name in map(module_name, names):
        if name not in real:
            close = difflib.get_close_matches(name, real, n=5, cutoff=0.3) or real[:8]
            raise UserError(f'no layer named "{name}"; closest real names: {", ".join(close)}', where=where,
                            fix="use a name from model.named_modules(), or `evenly: N` to pick layers automatically")


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)


def evenly_spaced(model: nn.Module, count: int, probe: Callable[[nn.Module], object] | None = None) -> list[str]:
    """`count` activation modules spread evenly over the depth, always ending at the deepest one.

    With a `probe` (a function that runs the model on a small batch), only activations that keep a spatial or sequence axis are candidates when there are
    any (the feature extractor, not an MLP head). Falls back to convolutions and linear layers (minus the
    classifier) for models without activation modules.
    """
    candidates = [n for n, m in model.named_modules() if n and isinstance(m, _ACTIVATIONS)]
    if not candidates:
        candidates = [n for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d | nn.Linear)][:-1]
    if probe is not None and candidates:
        rec = Recorder(model, candidates)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            probe(model)
        model.train(was_training)
        rec.remove()
        maps = [n for n in candidates if n in rec.outputs and rec.outputs[n].dim() >= 3]
        candidates = maps or candidates
    if not candidates:
        raise UserError("cannot pick evenly spaced layers: the model has no activation, conv or linear modules",
                        where="losses.evenly", fix="name the layers with student_layers and teacher_layers")
    n = len(candidates)
    count = min(count, n)
    return [candidates[round((i + 1) * n / count) - 1] for i in range(count)]


class Recorder:
    """Forward hooks that keep the latest output of each named module (cloned, so later in-place ops cannot
    change it); a name ending in `:input` keeps the module's (first) input instead, under that name."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[module_name(n)].register_forward_hook(self._hook(n)) for n in dict.fromkeys(names)]

    def _hook(self, name: str) -> Callable:
        want_input = name.endswith(INPUT_SUFFIX)

        def hook(module, inputs, output):
            value = inputs if want_input else output
            out = value[0] if isinstance(value, tuple | list) else value
            self.outputs[name] = out.clone()

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


# ---------------------------------------------------------------- connectors


class Connector(nn.Module):
    """Student feature → teacher feature shape: channel projection (1×1 conv or linear) and spatial resizing."""

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> None:
        super().__init__()
        s, t = student_shape, teacher_shape
        if len(s) == 2 and len(t) == 4:
            raise UserError(f"cannot map a flat student feature {list(s)} onto a teacher feature map {list(t)}",
                            where="losses.student_layers", fix="pair layers of the same kind (both conv or both flat)")
        self.pool = len(s) == 4 and len(t) == 2
        self.size = tuple(t[2:]) if len(s) == 4 and len(t) == 4 and s[2:] != t[2:] else None
        cs, ct = s[1], t[1]
        if len(t) == 4:
            self.proj = nn.Conv2d(cs, ct, 1, bias=False) if cs != ct else nn.Identity()
        else:
            self.proj = nn.Linear(cs, ct) if cs != ct else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool:
            x = x.mean(dim=(2, 3))
        x = self.proj(x)
        if self.size is not None:
            x = F.adaptive_avg_pool2d(x, self.size) if x.shape[2] >= self.size[0] else F.interpolate(x, self.size)
        return x


# ---------------------------------------------------------------- losses

FeatureLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FEATURE_LOSSES: dict[str, FeatureLoss] = {}
NEEDS_SAME_SHAPE = {"mse", "cosine"}  # the others compare shape-free summaries (attention maps, pairwise relations)


def register_feature_loss(name: str) -> Callable[[FeatureLoss], FeatureLoss]:
    def deco(fn: FeatureLoss) -> FeatureLoss:
        FEATURE_LOSSES[name] = fn
        return fn

    return deco


@register_feature_loss("mse")
def mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(s, t)


@register_feature_loss("cosine")
def cosine(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity of the flattened features, batch mean."""
    return (1.0 - F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1)).mean()


def attention_map(f: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Zagoruyko & Komodakis: mean over channels of |F|^p, flattened and L2-normalised per sample."""
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1), dim=1)


@register_feature_loss("attention")
def attention_transfer(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """‖ Q_s/‖Q_s‖ − Q_t/‖Q_t‖ ‖₂, batch mean; the student's map is resized to the teacher's when needed."""
    if s.dim() != 4 or t.dim() != 4:
        raise UserError(f"attention transfer needs 4-D feature maps, got {list(s.shape)} and {list(t.shape)}",
                        where="losses", fix="pick convolutional layers, or use mse/cosine/rkd_* for flat features")
    if s.shape[2:] != t.shape[2:]:
        s = F.interpolate(s, size=t.shape[2:], mode="bilinear", align_corners=False)
    return (attention_map(s) - attention_map(t)).norm(dim=1).mean()


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    d = torch.cdist(x, x)
    mean = d[d > 0].mean() if (d > 0).any() else d.new_tensor(1.0)
    return d / mean


@register_feature_loss("rkd_distance")
def rkd_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Park et al.: Huber loss between the mean-normalised pairwise distance matrices."""
    return F.smooth_l1_loss(_pairwise_distances(s), _pairwise_distances(t))


def _angles(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # e[i, j] = unit(x_j − x_i)
    return torch.bmm(e, e.transpose(1, 2)).flatten()  # cos of the angle at i between j and k


@register_feature_loss("rkd_angle")
def rkd_angle(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Park et al.: Huber loss between the cosines of all triplet angles."""
    return F.smooth_l1_loss(_angles(s), _angles(t))


# ---------------------------------------------------------------- mapping


class FeatureTerm:
    """One mapping: student layers ↔ teacher layers, a feature loss, a weight, and the connectors it needs."""

    def __init__(self, loss: str, weight: float, pairs: list[tuple[str, str]]) -> None:
        self.loss, self.weight, self.pairs = loss, weight, pairs
        self.connectors = nn.ModuleDict()

    def build_connectors(self, student_out: dict[str, torch.Tensor], teacher_out: dict[str, torch.Tensor]) -> None:
        """Create a connector for every pair whose shapes differ (only for losses that compare raw features)."""
        if self.loss not in NEEDS_SAME_SHAPE:
            return
        for s_name, t_name in self.pairs:
            s_shape, t_shape = tuple(student_out[s_name].shape), tuple(teacher_out[t_name].shape)
            if s_shape != t_shape:
                self.connectors[_key(s_name, t_name)] = Connector(s_shape, t_shape)

    def __call__(self, student_out: dict[str, torch.Tensor], teacher_out: dict[str, torch.Tensor]) -> torch.Tensor:
        fn = FEATURE_LOSSES[self.loss]
        total = 0.0
        for s_name, t_name in self.pairs:
            s = student_out[s_name]
            key = _key(s_name, t_name)
            if key in self.connectors:
                s = self.connectors[key](s)
            total = total + fn(s, teacher_out[t_name])
        return self.weight * total / len(self.pairs)


def _key(s_name: str, t_name: str) -> str:
    return f"{s_name}->{t_name}".replace(".", "_")
