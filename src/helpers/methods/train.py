"""A small, resumable training loop for classifiers, and their evaluation.

Used wherever a chapter trains something that maps inputs to class logits (byte classifiers,
pixel CNNs, ResNet-18, the stand-in backbones). Other models (GANs, colorizers, captioners)
keep their own loops in their chapter modules but use the same ``Checkpointer``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from helpers.core.cache import Checkpointer


@dataclass
class History:
    """Per-epoch training record."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)  # on ``val_loader``: a validation or a test set
    seconds: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    resumed_epochs: int = 0  # epochs taken from a checkpoint rather than trained by this process

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def as_dict(self) -> dict[str, list[float] | int]:
        return asdict(self)


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(predicted classes, true labels)`` over a loader of ``(inputs, labels)`` batches."""
    model.eval()
    preds, labels = [], []
    for inputs, target in loader:
        preds.append(model(inputs.to(device)).argmax(1).cpu())
        labels.append(torch.as_tensor(target))
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def accuracy(model: nn.Module, loader: Iterable, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` over ``loader``."""
    pred, true = predict(model, loader, device)
    return float((pred == true).mean()) if len(true) else float("nan")


def train_classifier(
    model: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    val_loader: Iterable | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    device: str = "cpu",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    checkpoint: Checkpointer | None = None,
    desc: str = "train",
) -> History:
    """Train with cross-entropy for ``epochs`` epochs; resume from ``checkpoint`` when it holds a state.

    The scheduler (if any) steps once per epoch. The checkpoint, if given, is written after every
    epoch, so an interrupted run continues from its last finished epoch.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    history = History()
    start_epoch = 0
    # The model moves first: Optimizer.load_state_dict casts its state to the device of each
    # parameter *now*, so loading it before the move would leave Adam's moments on the CPU.
    model.to(device)
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        history = History(**state["history"])
        start_epoch = history.resumed_epochs = history.epochs
        torch.set_rng_state(state["rng"])
    for epoch in range(start_epoch, epochs):
        model.train()
        seen, correct, loss_sum, began = 0, 0, 0.0, time.perf_counter()
        for inputs, target in tqdm(train_loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False):
            inputs, target = inputs.to(device), torch.as_tensor(target).to(device)
            logits = model(inputs)
            loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(target)
            correct += int((logits.argmax(1) == target).sum())
            loss_sum += loss.item() * len(target)
        if scheduler is not None:
            scheduler.step()
        elapsed = time.perf_counter() - began
        history.train_loss.append(loss_sum / max(seen, 1))
        history.train_acc.append(correct / max(seen, 1))
        history.seconds.append(elapsed)
        history.samples_per_s.append(seen / elapsed if elapsed else float("nan"))
        history.val_acc.append(accuracy(model, val_loader, device) if val_loader is not None else float("nan"))
        if checkpoint is not None:
            checkpoint.save({
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": history.as_dict(),
                "rng": torch.get_rng_state(),
            })
    return history
