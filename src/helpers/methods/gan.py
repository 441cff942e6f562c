"""StarGAN's losses and training loop (WGAN-GP critic, n_critic updates per generator update), and
the metrics that judge a trained translator.

Losses (Choi et al. 2018, with the WGAN-GP adversarial term of Gulrajani et al. 2017):

* critic: ``-D(x) + D(G(x, c')) + lambda_cls * CE(D_cls(x), c) + lambda_gp * GP``;
* generator: ``-D(G(x, c')) + lambda_cls * CE(D_cls(G(x, c')), c') + lambda_rec * |x - G(G(x, c'), c)|``.

Every random draw of training iteration ``i`` (the batch, its flips, the target domains, the
gradient-penalty mixing weights) comes from a generator seeded with ``(seed, i)``, so a run that
is interrupted and resumed from its checkpoint takes exactly the steps of an uninterrupted run.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2gray
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm import tqdm

from helpers.core.cache import Checkpointer
from helpers.methods.metrics import ssim

STEP_SEED_STRIDE = 1_000_003  # iteration seeds of different run seeds never collide below a million steps


@dataclass(frozen=True)
class LossWeights:
    """StarGAN's loss weights (the study's values are the defaults)."""

    cls: float = 1.0
    rec: float = 10.0
    gp: float = 10.0


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot codes (N, num_classes) of integer domain labels; out-of-range labels are an error."""
    labels = torch.as_tensor(labels)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"domain labels must lie in [0, {num_classes}), got {labels.tolist()}")
    return F.one_hot(labels.long(), num_classes).float()


def shuffled_targets(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Target domains for a batch: its own labels in random order (StarGAN's rule; a target may equal its source)."""
    return labels[torch.randperm(len(labels), generator=generator)]


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean of ``(||grad critic(x_hat)||_2 - 1)^2`` at ``x_hat = alpha * real + (1 - alpha) * fake``."""
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score, x_hat, grad_outputs=torch.ones_like(score), create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def critic_loss(G: nn.Module, D: nn.Module, real: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                alpha: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """The critic's loss on one batch and its parts (``d_real``, ``d_fake``, ``d_cls``, ``d_gp``)."""
    num_classes = D.domain.out_channels
    src_real, cls_real = D(real)
    d_real = -src_real.mean()
    d_cls = F.cross_entropy(cls_real, labels)
    with torch.no_grad():
        fake = G(real, one_hot(targets, num_classes).to(real.device))
    d_fake = D(fake)[0].mean()
    d_gp = gradient_penalty(lambda x: D(x)[0], real, fake, alpha)
    loss = d_real + d_fake + weights.cls * d_cls + weights.gp * d_gp
    return loss, {"d_real": d_real.item(), "d_fake": d_fake.item(), "d_cls": d_cls.item(), "d_gp": d_gp.item()}


def generator_loss(G: nn.Module, D: nn.Module, real: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                   weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """The generator's loss on one batch and its parts (``g_fake``, ``g_cls``, ``g_rec``)."""
    num_classes = D.domain.out_channels
    fake = G(real, one_hot(targets, num_classes).to(real.device))
    src_fake, cls_fake = D(fake)
    g_fake = -src_fake.mean()
    g_cls = F.cross_entropy(cls_fake, targets)
    g_rec = (real - G(fake, one_hot(labels, num_classes).to(real.device))).abs().mean()
    loss = g_fake + weights.cls * g_cls + weights.rec * g_rec
    return loss, {"g_fake": g_fake.item(), "g_cls": g_cls.item(), "g_rec": g_rec.item()}


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 (0..255)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass
class ImageBank:
    """Square training images held in memory (uint8) with their domain labels; draws seeded batches."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if len(self.labels) != len(self.images) or len(self.images) == 0:
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch in [-1, 1] (distinct images while the bank is big enough), half of them mirrored."""
        if batch_size <= len(self):
            index = torch.randperm(len(self), generator=generator)[:batch_size]
        else:
            index = torch.randint(len(self), (batch_size,), generator=generator)
        x = to_unit(self.images[index])
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x[flip] = x[flip].flip(-1)
        return x, self.labels[index]


@dataclass(frozen=True)
class TrainSettings:
    """One StarGAN run: iterations count critic updates; the generator is updated every ``n_critic``."""

    iterations: int
    batch_size: int
    n_critic: int = 5
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weights: LossWeights = LossWeights()
    seed: int = 0


@dataclass
class StarGANHistory:
    """Every loss of every update, the training time and where (if anywhere) the run was resumed."""

    d_iteration: list[int] = field(default_factory=list)
    d_real: list[float] = field(default_factory=list)
    d_fake: list[float] = field(default_factory=list)
    d_cls: list[float] = field(default_factory=list)
    d_gp: list[float] = field(default_factory=list)
    g_iteration: list[int] = field(default_factory=list)
    g_fake: list[float] = field(default_factory=list)
    g_cls: list[float] = field(default_factory=list)
    g_rec: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_at: list[int] = field(default_factory=list)
    trained_now: int = 0  # iterations run by this call (0: everything came from the checkpoint)

    @property
    def iterations(self) -> int:
        return len(self.d_iteration)

    def log(self, iteration: int, parts: dict[str, float]) -> None:
        """Append one update's loss parts (critic parts or generator parts)."""
        prefix = "d" if "d_real" in parts else "g"
        getattr(self, f"{prefix}_iteration").append(iteration)
        for name, value in parts.items():
            getattr(self, name).append(value)

    def as_dict(self) -> dict:
        return asdict(self)


def _step_generator(seed: int, iteration: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + iteration)


def train_stargan(G: nn.Module, D: nn.Module, bank: ImageBank, settings: TrainSettings, *, device: str = "cpu",
                  checkpoint: Checkpointer | None = None, desc: str = "StarGAN") -> StarGANHistory:
    """Train ``G`` and ``D`` in place for ``settings.iterations`` critic updates; resume from ``checkpoint``.

    The checkpoint is written every ``checkpoint.every`` iterations and at the end; a finished
    checkpoint makes this call a load.
    """
    opt_g = torch.optim.Adam(G.parameters(), lr=settings.lr, betas=settings.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=settings.lr, betas=settings.betas)
    history, start = StarGANHistory(), 0
    # Move before loading: the optimizers cast their state to their parameters' device on load.
    G.to(device).train()
    D.to(device).train()
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        if state["iteration"] > settings.iterations:
            raise ValueError(f"the checkpoint is at iteration {state['iteration']}, past the {settings.iterations} asked for")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        history = StarGANHistory(**{**state["history"], "trained_now": 0})
        start = state["iteration"]
        if start < settings.iterations:
            history.resumed_at.append(start)

    def snapshot(iteration: int) -> dict:
        return {"iteration": iteration, "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(), "history": history.as_dict()}

    began = time.perf_counter()
    for it in tqdm(range(start, settings.iterations), desc=desc, initial=start, total=settings.iterations, leave=False):
        rng = _step_generator(settings.seed, it)
        real, labels = bank.sample(settings.batch_size, rng)
        targets = shuffled_targets(labels, rng)
        alpha = torch.rand(len(real), 1, 1, 1, generator=rng)
        real, labels, targets, alpha = real.to(device), labels.to(device), targets.to(device), alpha.to(device)

        loss, parts = critic_loss(G, D, real, labels, targets, alpha, settings.weights)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        history.log(it, parts)

        if (it + 1) % settings.n_critic == 0:
            D.requires_grad_(False)  # the generator's step needs gradients through D, not for D's weights
            loss, parts = generator_loss(G, D, real, labels, targets, settings.weights)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            D.requires_grad_(True)
            history.log(it, parts)
        history.trained_now += 1
        now = time.perf_counter()
        history.seconds, began = history.seconds + now - began, now
        if checkpoint is not None:
            checkpoint.maybe_save(it + 1, lambda: snapshot(it + 1))
    if checkpoint is not None and history.trained_now:
        checkpoint.save(snapshot(settings.iterations))
    G.eval()
    D.eval()
    return history


@torch.no_grad()
def translate(G: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 32,
              device: str = "cpu") -> torch.Tensor:
    """``G`` applied to uint8 ``images`` towards domain labels ``targets``; uint8 results on the CPU."""
    num_classes = G.num_classes
    out = []
    for start in range(0, len(images), batch_size):
        x = to_unit(images[start:start + batch_size]).to(device)
        code = one_hot(targets[start:start + batch_size], num_classes).to(device)
        out.append(to_uint8(G(x, code)).cpu())
    return torch.cat(out)


def translate_to_every_domain(G: nn.Module, images: torch.Tensor, *, device: str = "cpu") -> torch.Tensor:
    """uint8 (N, num_classes, 3, H, W): each image translated to each domain (for translation grids)."""
    n = len(images)
    targets = torch.arange(G.num_classes).repeat(n)
    out = translate(G, images.repeat_interleave(G.num_classes, dim=0), targets, device=device)
    return out.view(n, G.num_classes, *images.shape[1:])


def kid_score(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 50, max_subset: int = 100,
              seed: int = 0) -> float:
    """Kernel inception distance (torchmetrics) between two sets of feature vectors (N, d)."""
    subset_size = min(len(real), len(fake), max_subset)
    if subset_size < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {len(real)} and {len(fake)}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=nn.Identity(), subsets=subsets, subset_size=subset_size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


def inception_fid() -> FrechetInceptionDistance:
    """torchmetrics' FID on InceptionV3 pool features (torch-fidelity's weights, downloaded on first use).

    Raises ``RuntimeError`` with what to do when torch-fidelity is missing or the weights cannot be
    fetched, so a chapter can build the metric before it trains and fail at once rather than at the end.
    """
    try:
        return FrechetInceptionDistance(feature=2048, normalize=False)
    except ModuleNotFoundError as err:
        raise RuntimeError("FID needs torch-fidelity, in the book's gpu extra: pip install torch-fidelity, or install "
                           "the book as compressed-images-book[gpu]") from err
    except (OSError, RuntimeError) as err:  # a failed download is an URLError, an OSError
        raise RuntimeError(
            "could not load the InceptionV3 weights that FID needs (torch-fidelity downloads them from GitHub "
            "on first use): connect to the internet, or use a profile that reports KID only") from err


def _fid(metric: FrechetInceptionDistance, real: torch.Tensor, fake: torch.Tensor, batch_size: int,
         device: str) -> float:
    metric.reset()
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size].to(device), real=is_real)
    return float(metric.compute())


@torch.no_grad()
def fid_into_targets(metric: FrechetInceptionDistance, G: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                     batch_size: int = 32, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per target domain t: FID(real t, translations into t of the other domains' uint8 images), and
    FID(real t, those images untranslated), the no-translation reference. ``metric`` takes uint8 images."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    metric = metric.to(device)
    translated, untranslated = np.zeros(G.num_classes), np.zeros(G.num_classes)
    for t in range(G.num_classes):
        real, others = images[labels == t], images[labels != t]
        fake = translate(G, others, torch.full((len(others),), t), batch_size=batch_size, device=device)
        translated[t] = _fid(metric, real, fake, batch_size, device)
        untranslated[t] = _fid(metric, real, others, batch_size, device)
    return translated, untranslated


def _gray(images: torch.Tensor) -> np.ndarray:
    return rgb2gray(images.permute(0, 2, 3, 1).numpy())


@dataclass
class TranslationReport:
    """How well a generator translates held-out images, per source (rows) and target (columns) domain."""

    domains: tuple[str, ...]
    size: int
    counts: np.ndarray  # test images per source domain
    real_accuracy: np.ndarray  # per domain: the judge's accuracy on untranslated real images
    target_accuracy: np.ndarray  # [s, t]: share of s-images translated to t that the judge calls t
    cycle_l1: np.ndarray  # [s, t]: mean |x - G(G(x, t), s)| on a 0..1 scale
    structure_ssim: np.ndarray  # [s, t]: SSIM of the grey-level input and output
    kid: np.ndarray  # per target: KID(real t, translations into t from the other domains)
    kid_untranslated: np.ndarray  # per target: KID(real t, the untranslated images of the other domains)

    def off_diagonal_mean(self, matrix: np.ndarray) -> float:
        """Mean over source != target pairs."""
        mask = ~np.eye(len(self.domains), dtype=bool)
        return float(matrix[mask].mean())

    def accuracy_into(self, target: int) -> float:
        """Target accuracy of translations into ``target`` from every other domain."""
        return float(np.delete(self.target_accuracy[:, target], target).mean())

    def summary(self) -> dict[str, float]:
        """Headline numbers: means over every source != target pair (KID: over targets)."""
        return {
            "real_accuracy": float((self.real_accuracy * self.counts).sum() / self.counts.sum()),
            "target_accuracy": self.off_diagonal_mean(self.target_accuracy),
            "worst_target_accuracy": min(self.accuracy_into(t) for t in range(len(self.domains))),
            "cycle_l1": self.off_diagonal_mean(self.cycle_l1),
            "structure_ssim": self.off_diagonal_mean(self.structure_ssim),
            "kid": float(self.kid.mean()),
            "kid_untranslated": float(self.kid_untranslated.mean()),
        }


@torch.no_grad()
def evaluate_translations(G: nn.Module, images: torch.Tensor, labels: torch.Tensor, features: nn.Module,
                          head: nn.Module, domains: tuple[str, ...], *, kid_features: nn.Module | None = None,
                          batch_size: int = 32, kid_subsets: int = 50, seed: int = 0,
                          device: str = "cpu") -> TranslationReport:
    """Translate every uint8 image to every other domain and score the results with an independent judge.

    ``features`` maps images in [-1, 1] to vectors and ``head`` maps those to domain logits (a
    classifier trained on real photos, not the discriminator); KID is computed on ``kid_features``
    (another map of images in [-1, 1] to vectors), or on ``features`` when it is not given.
    """
    n = len(domains)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if G.num_classes != n or len(labels) != len(images):
        raise ValueError(f"{n} domain names for a {G.num_classes}-domain generator; {len(images)} images, {len(labels)} labels")
    G.eval()
    features.eval()
    head.eval()
    if kid_features is not None:
        kid_features.eval()

    def kid_of(images: torch.Tensor, judged: torch.Tensor) -> torch.Tensor:
        # the judge's own features serve KID when no other map is given: computed once
        return judged if kid_features is None else kid_features(images)

    hits, l1, sim = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    real_feats, real_hits = [], np.zeros(n)
    fake_feats: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for start in tqdm(range(0, len(images), batch_size), desc="evaluate translations", leave=False):
        x8, y = images[start:start + batch_size], labels[start:start + batch_size]
        x = to_unit(x8).to(device)
        f = features(x)
        real_feats.append(kid_of(x, f).cpu())
        np.add.at(real_hits, y.numpy(), (head(f).argmax(1).cpu() == y).numpy())
        gray_in = _gray(x8)
        for t in range(n):
            fake = G(x, one_hot(torch.full_like(y, t), n).to(device))
            ff = features(fake)
            np.add.at(hits[:, t], y.numpy(), (head(ff).argmax(1).cpu() == t).numpy())
            back = G(fake, one_hot(y, n).to(device))
            np.add.at(l1[:, t], y.numpy(), ((back - x).abs().mean(dim=(1, 2, 3)) / 2).cpu().numpy())
            gray_out = _gray(to_uint8(fake).cpu())
            np.add.at(sim[:, t], y.numpy(), [ssim(a, b, data_range=1.0) for a, b in zip(gray_in, gray_out)])
            keep = (y != t).cpu()
            fake_feats[t].append(kid_of(fake, ff).cpu()[keep])
    counts = np.bincount(labels.numpy(), minlength=n)
    if (counts == 0).any():
        raise ValueError(f"every domain needs test images; counts per domain: {dict(zip(domains, counts.tolist()))}")
    real = torch.cat(real_feats)
    kid = np.array([kid_score(real[labels == t], torch.cat(fake_feats[t]), subsets=kid_subsets, seed=seed)
                    for t in range(n)])
    kid_untranslated = np.array([kid_score(real[labels == t], real[labels != t], subsets=kid_subsets, seed=seed)
                                 for t in range(n)])
    per = counts[:, None].astype(float)
    return TranslationReport(
        domains=tuple(domains), size=int(images.shape[-1]), counts=counts, real_accuracy=real_hits / counts,
        target_accuracy=hits / per, cycle_l1=l1 / per, structure_ssim=sim / per, kid=kid,
        kid_untranslated=kid_untranslated,
    )
