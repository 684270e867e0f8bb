"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020): the machinery.

CRD makes the student's representation of a sample closer to the teacher's representation of the *same* sample
than to the teacher's representations of other samples, which transfers the structure (correlations between
dimensions) that a per-sample distance such as MSE ignores. The pieces, written after the official code
(github.com/HobbitLong/RepDistiller, crd/):

- `Embed`: a linear head into a small shared space (`feat_dim`), then L2 normalisation; one for the student,
  one for the teacher, trained with the student and never exported;
- `ContrastMemory`: one bank per network of `n_train × feat_dim` unit vectors, row i the running (momentum)
  embedding of training row i, so each step sees `nce_k` negatives per row without a batch that large;
- `nce_loss`: noise-contrastive estimation with a uniform noise distribution (P_n = 1/n_train) and
  exp(v·m/T)/Z as the model's density, Z estimated once on the first batch (as the official code does: an
  exact normaliser would cost a pass over the whole bank each step).

Both directions are contrasted: the student's embedding against the teacher's memory, and the teacher's
embedding against the student's memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-7  # the official code's guard in the NCE ratios


class Embed(nn.Module):
    """Flatten, project linearly to `feat_dim`, L2-normalise: the space both networks are contrasted in."""

    def __init__(self, dim_in: int, feat_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


def sample_negatives(idx: torch.Tensor, n_data: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, k + 1] memory rows: column 0 the positive (`idx`), then `k` rows drawn uniformly among the others.

    Uniform over the n − 1 other rows (the official code draws uniformly over all n with an alias table, so a
    positive may also appear as its own negative; excluding it changes nothing else)."""
    draw = torch.randint(0, n_data - 1, (idx.shape[0], k), generator=generator, device=idx.device)
    draw = draw + (draw >= idx.unsqueeze(1)).long()  # skip the positive's own row
    return torch.cat([idx.unsqueeze(1), draw], dim=1)


def nce_loss(x: torch.Tensor, n_data: int) -> torch.Tensor:
    """NCE with uniform noise P_n = 1/n_data on scores `x` [B, 1 + m] (column 0 the positive; the official Eq. 18).

    −(Σ_rows log P₀/(P₀ + m·P_n) + Σ_rows,negatives log m·P_n/(P_j + m·P_n)) / B."""
    m = x.shape[1] - 1
    noise = m / float(n_data)
    pos, neg = x[:, 0], x[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + EPS))
    log_d0 = torch.log(noise / (neg + noise + EPS))
    return -(log_d1.sum() + log_d0.sum()) / x.shape[0]


def memory_dots(memory: torch.Tensor, v: torch.Tensor, rows: torch.Tensor, full: bool | None = None) -> torch.Tensor:
    """[B, k + 1]: v_b · memory[rows[b, j]].

    Gathering B·(k + 1) memory rows copies B·(k + 1)·feat_dim floats; when that is most of the bank anyway
    (a small training split, k capped near n), one matmul against the whole bank and a pick of the scores is
    the same numbers, ~10× faster on digits (measured in docs/distillation.md). `full` forces one way (tests)."""
    b, k1 = rows.shape
    if full if full is not None else memory.shape[0] <= 4 * k1:
        # a copy: the memory is updated in place before backward, which needs the bank as it was
        return (v @ memory.clone().T).gather(1, rows)
    return torch.bmm(memory.index_select(0, rows.reshape(-1)).view(b, k1, -1), v.unsqueeze(2)).squeeze(2)


class ContrastMemory(nn.Module):
    """The two memory banks and the normalisation constants, all buffers (saved with a checkpoint, not trained).

    `z` is [Z_student_anchor, Z_teacher_anchor], −1 until the first batch sets them (then fixed)."""

    def __init__(self, feat_dim: int, n_data: int, nce_k: int, nce_t: float, momentum: float) -> None:
        super().__init__()
        self.n_data, self.nce_k, self.nce_t, self.momentum = n_data, nce_k, nce_t, momentum
        stdv = 1.0 / math.sqrt(feat_dim / 3)  # the official initialisation: uniform in ±stdv, unit variance per dim
        self.register_buffer("memory_s", torch.rand(n_data, feat_dim).mul_(2 * stdv).sub_(stdv))
        self.register_buffer("memory_t", torch.rand(n_data, feat_dim).mul_(2 * stdv).sub_(stdv))
        self.register_buffer("z", torch.full((2,), -1.0))

    def scores(self, v_s: torch.Tensor, v_t: torch.Tensor, contrast_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(student anchor vs teacher memory, teacher anchor vs student memory), each exp(v·m/T)/Z, [B, k + 1]."""
        out_s = torch.exp(memory_dots(self.memory_t, v_s, contrast_idx) / self.nce_t)
        out_t = torch.exp(memory_dots(self.memory_s, v_t, contrast_idx) / self.nce_t)
        with torch.no_grad():
            for i, out in enumerate((out_s, out_t)):
                if self.z[i] < 0:  # estimated once, on the first batch: mean score × n_data
                    self.z[i] = out.mean() * self.n_data
        return out_s / self.z[0], out_t / self.z[1]

    @torch.no_grad()
    def update(self, v_s: torch.Tensor, v_t: torch.Tensor, idx: torch.Tensor) -> None:
        """Rows `idx` of each bank ← normalise(momentum · old + (1 − momentum) · new embedding)."""
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            mixed = memory.index_select(0, idx) * self.momentum + v.detach().to(memory.dtype) * (1 - self.momentum)
            memory.index_copy_(0, idx, F.normalize(mixed, dim=1))


class CRDHeads(nn.Module):
    """What CRD adds to training: the two embedding heads (trained) and the memory (buffers)."""

    def __init__(self, s_dim: int, t_dim: int, feat_dim: int, n_data: int, nce_k: int, nce_t: float,
                 momentum: float) -> None:
        super().__init__()
        self.embed_s = Embed(s_dim, feat_dim)
        self.embed_t = Embed(t_dim, feat_dim)
        self.memory = ContrastMemory(feat_dim, n_data, nce_k, nce_t, momentum)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, idx: torch.Tensor,
                contrast_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss (both directions summed) and the two embeddings (for the memory update after the step)."""
        if contrast_idx is None:
            contrast_idx = sample_negatives(idx, self.memory.n_data, self.memory.nce_k)
        # float32 whatever the autocast: exp(v·m/T) reaches e^(1/0.07) ≈ 1.6e6, past float16's 65504
        with torch.autocast(device_type=f_s.device.type, enabled=False):
            v_s = self.embed_s(f_s.float())
            v_t = self.embed_t(f_t.detach().float())
            out_s, out_t = self.memory.scores(v_s, v_t, contrast_idx)
            n = self.memory.n_data
            return nce_loss(out_s, n) + nce_loss(out_t, n), v_s, v_t
