"""How much GPU memory a training step needs, estimated on the CPU.

A step holds the weights, their gradients, the optimizer's state (Adam: two tensors per weight,
SGD with momentum: one) and the activations that autograd saves for the backward pass. The last
part is measured, not guessed: one forward and backward pass at a small probe batch records every
tensor autograd saves (``torch.autograd.graph.saved_tensors_hooks``), and it grows linearly with
the batch. The estimate leaves out the CUDA context (about 0.3-0.5 GB) and the allocator's slack,
so a plan should keep a margin below the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn

GIB = 1024**3
COLAB_T4_GIB = 15.0  # the GPU memory of Colab's free T4


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training (or inference) step needs at ``batch``."""

    name: str
    batch: int
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations


def saved_bytes(step: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves while ``step()`` builds its graph (then backward)."""
    storages: dict[tuple[int, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = step()
    if loss.requires_grad:
        loss.backward()
    return sum(storages.values())


def step_memory(name: str, model: nn.Module, step: Callable[[int], torch.Tensor], batch: int, *,
                optimizer_slots: int = 2, probe_batch: int = 2) -> StepMemory:
    """The memory of ``step(b)`` (a forward pass at batch ``b`` returning a loss) at batch ``batch``.

    ``optimizer_slots`` is the optimizer's state per trainable weight (Adam 2, SGD momentum 1,
    none 0). Activations are measured at ``probe_batch`` and ``2 * probe_batch`` and extrapolated
    linearly, which also removes the part that does not grow with the batch.
    """
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    small, large = saved_bytes(lambda: step(probe_batch)), saved_bytes(lambda: step(2 * probe_batch))
    model.zero_grad(set_to_none=True)
    per_item = max(large - small, 0) / probe_batch
    activations = int(max(small - per_item * probe_batch, 0) + per_item * batch)
    return StepMemory(name, batch, weights, trainable, optimizer_slots * trainable, activations)


def table(steps: list[StepMemory], card_gib: float = COLAB_T4_GIB) -> pd.DataFrame:
    """One row per step in GiB, and whether it fits ``card_gib`` with a 1 GiB margin."""
    rows = [{"step": s.name, "batch": s.batch, "weights": s.weights / GIB, "gradients": s.gradients / GIB,
             "optimizer": s.optimizer / GIB, "activations": s.activations / GIB, "total": s.total / GIB}
            for s in steps]
    out = pd.DataFrame(rows).set_index("step").round(2)
    out[f"fits a {card_gib:g} GB T4"] = out["total"] < card_gib - 1
    return out
