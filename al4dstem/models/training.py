"""Training, as in the paper, made to work with a few dozen labels on a CPU.

- stratified 80:20 train/validation split, deterministic for a seed (``stratified_split``);
- AdamW (lr 4e-4 for the paper's network, 2e-3 for the default one; weight decay 2e-3,
  betas 0.9/0.999), cross-entropy with class weights
  ("balanced": the rare none class counts as much as the others);
- the learning rate follows a cosine schedule over all epochs down to 3e-5, and the last weights
  are kept (``schedule="cosine"``, ``keep="last"``: what ``CNNClassifier`` uses). The paper's way,
  ReduceLROnPlateau on the validation loss (factor 0.5, patience 2) keeping the weights of the lowest
  validation loss and stopping early after ``patience`` epochs without progress, is
  ``schedule="plateau"``, ``keep="best"``: with ten validation patterns that loss is too noisy to
  choose by, and on faint scans it kept weights from the first epochs, which had collapsed;
- on a GPU (``TrainConfig.device``) the network and batches live there; augmentation stays on the
  CPU, and the trained network comes back to the CPU;
- an epoch shows at least ``EPOCH_SAMPLES`` augmented patterns (a few dozen labels are passed
  over several times), so that the scheduler and early stopping see real progress per epoch;
- epochs scale with the label count as in the paper (halved per tenfold labels), counted in
  these longer epochs: 100 for 50 labels, 50 for 500. The paper's 400 epochs of 40 training
  patterns are 62 of ours; 100 is what ``benchmarks/bench_accuracy.py`` measured to reach
  >= 97% held-out with 50 labels while training in well under a minute on 2 cores;
- augmentation (``augment.Augmenter``) on binned counts, then the model's scaling and
  normalisation (``augment.Finish``); the validation loss is measured on every symmetric
  view of each validation pattern that the lattice allows (labels mapped), which makes it less
  noisy with ten validation patterns and checks the symmetry the model learnt;
- symmetries come from the scan's lattice angle (``augment.lattice_symmetries``): the rotations
  by 90 degrees always, mirrors only for a lattice aligned with the detector or at 45 degrees;
- a run that ends predicting one class on its own labels while they hold several is a
  ``CollapseWarning`` with advice (``collapse_message``), never a silent map.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES
from al4dstem.models.augment import SWAP, Augmenter, Finish, Symmetry, symmetric_views

VAL_FRACTION = 0.2
MIN_LABELS = 5  # 20% of 5 is one validation pattern
SCHEDULER = {"factor": 0.5, "patience": 2, "min_lr": 3e-5}
BETAS = (0.9, 0.999)
MIN_IMPROVEMENT = 1e-3  # relative decrease of the validation loss that counts as progress
EPOCH_SAMPLES = 256  # an epoch shows at least this many (augmented) patterns

#: ``progress(epoch, max_epochs, record)`` after each epoch.
Progress = Callable[[int, int, dict], None]


class CollapseWarning(UserWarning):
    """A trained model predicts fewer classes on its own labels than the labels hold."""


def collapse_message(predicted: np.ndarray, y: np.ndarray) -> str | None:
    """A warning with advice when ``predicted`` (on the labelled patterns) covers one class while
    ``y`` holds several, or never gives a class that ``y`` holds; None when the model uses every class
    it was taught."""
    predicted, y = np.asarray(predicted), np.asarray(y)
    taught = np.unique(y)
    used = np.unique(predicted)
    advice = ("Try --network auto (compares simpler models on the same labels), more labels of the rarer classes, "
              "or neighbourhood averaging on faint, noisy scans")
    if len(taught) < 2:
        return None
    have = ", ".join(f"{int((y == c).sum())} {CLASSES[c]}" for c in taught)
    if len(used) <= 1:
        name = CLASSES[int(used[0])] if len(used) else "nothing"
        return (f"the trained model predicts {name} for every labelled pattern although the labels hold {have}: "
                f"it has not learnt the classes. {advice}")
    missing = [CLASSES[int(c)] for c in taught if c not in used]
    if missing:  # a partial collapse: a class the person taught never comes out, not even on its own labels
        return (f"the trained model never predicts {' or '.join(missing)} on the labelled patterns although the "
                f"labels hold {have}: it has not learnt {'that class' if len(missing) == 1 else 'those classes'}. "
                f"{advice}")
    return None


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (see ``CNNClassifier`` for their meaning)."""

    epochs: int | None = None
    batch_size: int = 32
    lr: float = 4e-4
    weight_decay: float = 2e-3
    patience: int | None = None
    augment: bool = True
    class_weight: str | None = "balanced"
    seed: int = 0
    symmetries: tuple[Symmetry, ...] | None = None  # None: the four rotations (any lattice angle)
    schedule: str = "plateau"  # "plateau" (on the validation loss), "cosine" (over max_epochs) or "constant"
    keep: str = "best"  # weights kept: "best" (lowest validation loss) or "last"
    split: tuple | None = None  # (train, val) indices; None: a stratified 80:20 split of the labels
    device: object = None  # a torch.device to train on (None: the CPU, nothing moved); the network returns to the CPU


@dataclass
class TrainResult:
    """What a run learnt and how it went. ``state_dict`` holds the best weights."""

    state_dict: dict
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    epochs_run: int
    max_epochs: int
    stopped: str  # "early" or "max-epochs"
    n_train: int
    n_val: int
    seconds: float
    class_weights: list[float] = field(default_factory=list)
    n_symmetries: int = 0
    warnings: list[str] = field(default_factory=list)
    heldout: tuple | None = None  # (logits at temperature 1, classes) of the validation views, for calibration

    def summary(self) -> dict:
        return {
            "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
            "best_val_accuracy": self.best_val_accuracy, "epochs_run": self.epochs_run,
            "max_epochs": self.max_epochs, "stopped": self.stopped, "n_train": self.n_train,
            "n_val": self.n_val, "seconds": self.seconds, "class_weights": self.class_weights,
            "n_symmetries": self.n_symmetries, "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- schedule and data


def auto_epochs(n_labels: int) -> int:
    """Most epochs for ``n_labels``: 100 for 50 labels, 50 for 500, log-linear between (25..150)."""
    n = max(1, int(n_labels))
    return int(np.clip(round(100 - 50 * math.log10(n / 50)), 25, 150))


def auto_patience(max_epochs: int) -> int:
    """Early-stopping patience: a quarter of the schedule, at least 25 epochs."""
    return max(25, int(max_epochs) // 4)


def check_labels(y: np.ndarray) -> None:
    """Refuse label sets that cannot train a model, saying what is needed."""
    y = np.asarray(y)
    counts = np.bincount(y, minlength=len(CLASSES)) if len(y) else np.zeros(len(CLASSES), int)
    present = [f"{c} {CLASSES[k]}" for k, c in enumerate(counts) if c]
    if (counts > 0).sum() < 2:
        have = ", ".join(present) or "no labels"
        raise Al4dstemError(f"training needs labels of at least 2 classes, got {have}")
    if len(y) < MIN_LABELS:
        raise Al4dstemError(
            f"too few labels to split 80:20 into training and validation: {len(y)} given, "
            f"at least {MIN_LABELS} needed"
        )


def stratified_split(y: np.ndarray, seed: int = 0, val_fraction: float = VAL_FRACTION):
    """Indices ``(train, val)``: about ``val_fraction`` of each class to validation, deterministic.

    A class keeps at least one training pattern; a class with 1 or 2 labels gives none to
    validation unless the validation set would otherwise be empty (then one comes from the
    largest class).
    """
    y = np.asarray(y)
    rng = np.random.default_rng([int(seed), 7])
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(int(math.floor(val_fraction * len(idx) + 0.5)), len(idx) - 1)
        val.extend(idx[:k])
        train.extend(idx[k:])
    if not val:
        largest = np.bincount(y).argmax()
        pick = next(i for i in train if y[i] == largest)
        train.remove(pick)
        val.append(pick)
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def class_weights(y_train: np.ndarray, mode: str | None, symmetric: bool) -> np.ndarray:
    """Loss weight per class. "balanced": ``n / (k * count)`` over the k classes present.

    With symmetry augmentation every vertical pattern is also seen as horizontal and back, so
    the two in-plane classes share their counts before weighting.
    """
    counts = np.bincount(np.asarray(y_train), minlength=len(CLASSES)).astype(float)
    if symmetric:
        counts = (counts + counts[SWAP]) / 2
    if mode in (None, "none", "scan"):  # "scan": unweighted, then offset by the scan's shares (classifier)
        return np.ones(len(CLASSES), np.float32)
    if mode != "balanced":
        raise Al4dstemError(f"unknown class weighting {mode!r} (balanced, scan or none)")
    present = counts > 0
    w = np.zeros(len(CLASSES))
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def _batches(n: int, batch_size: int, rng: np.random.Generator, min_samples: int = 0) -> list[np.ndarray]:
    """A shuffled epoch in batches of nearly equal size, none smaller than ``batch_size`` unless the
    epoch itself is smaller (batch norm cannot train on a batch of one pattern).

    The training set is passed over as many times as it takes to reach ``min_samples``
    (each pass reshuffled; augmentation makes every repeat a new view).
    """
    passes = max(1, math.ceil(min_samples / max(1, n)))
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])
    n = len(order)
    k = max(1, n // max(1, int(batch_size)))
    return [b for b in np.array_split(order, k) if len(b)]


# ---------------------------------------------------------------- the loop


def train_network(net: nn.Module, x: np.ndarray, y: np.ndarray, config: TrainConfig, finish: Finish,
                  counts: bool = True, progress: Progress | None = None,
                  log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``net`` on binned linear patterns ``x`` ``(n, size, size)`` with classes ``y``.

    ``finish`` turns (augmented) binned patterns into network input; ``counts`` says the data
    are detector counts (Poisson resampling applies). Leaves ``net`` holding the best weights
    (lowest validation loss), in eval mode.
    """
    start = time.perf_counter()
    y = np.asarray(y, dtype=np.int64)
    check_labels(y)
    if config.split is None:
        train_idx, val_idx = stratified_split(y, config.seed)
    else:
        train_idx, val_idx = (np.asarray(i, np.int64) for i in config.split)
        if not len(train_idx) or not len(val_idx):
            raise Al4dstemError("training needs at least one training and one validation pattern")
    rng = np.random.default_rng([int(config.seed), 11])
    max_epochs = int(config.epochs) if config.epochs is not None else auto_epochs(len(y))
    if max_epochs < 1:
        raise Al4dstemError(f"epochs must be at least 1, got {max_epochs}")
    if int(config.batch_size) < 2:
        raise Al4dstemError(f"batch size must be at least 2 (batch normalisation), got {config.batch_size}")
    patience = int(config.patience) if config.patience is not None else auto_patience(max_epochs)
    if config.keep not in KEEPS:
        raise Al4dstemError(f"unknown choice of weights {config.keep!r} (one of {', '.join(KEEPS)})")

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    yt = torch.from_numpy(y)
    group = _group(config.symmetries)
    canonical, classify = stages(net)
    with torch.no_grad():
        x_val, y_val = symmetric_views(canonical(finish(xt[val_idx])), yt[val_idx], group)
    # augmentation runs on the CPU (numpy's generator); batches, validation views and the network on the device
    device = torch.device(config.device) if config.device is not None else None
    if device is not None:
        net.to(device)
        x_val, y_val = x_val.to(device), y_val.to(device)
    on_cpu = device is None or device.type == "cpu"
    if on_cpu:
        # oneDNN's channels-last convolutions train 1.1-1.25x faster on the CPU (a 1-channel input
        # is already laid out so); the weights go back to the default layout when training ends
        net.to(memory_format=torch.channels_last)
    # in canonical orientation the symmetries act on the resampled inputs (where the lattice is aligned)
    augmenter = Augmenter(group=group, symmetry=canonical is _identity) if config.augment else None
    after = Augmenter(group=group, mix=0.0, shift=0.0, dose=(1.0, 1.0), resample=0.0) \
        if config.augment and canonical is not _identity else None
    weights = class_weights(y[train_idx], config.class_weight, symmetric=augmenter is not None)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device or "cpu"))
    val_loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, betas=BETAS, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config.schedule, max_epochs)

    history: list[dict] = []
    best = {"loss": math.inf, "epoch": 0, "accuracy": 0.0, "state": copy.deepcopy(net.state_dict())}
    last_progress = 0  # epoch of the last improvement by more than MIN_IMPROVEMENT
    stopped = "max-epochs"
    try:
        for epoch in range(1, max_epochs + 1):
            record = _epoch(net, xt, yt, train_idx, config.batch_size, augmenter, finish, counts, loss_fn, optimizer,
                            rng, after, device)
            val_loss, val_acc = evaluate(classify, x_val, y_val, val_loss_fn, net)
            if not (math.isfinite(val_loss) and math.isfinite(record["train_loss"])):
                raise Al4dstemError(f"training diverged at epoch {epoch} (the loss is not finite): check the data "
                                    "for extreme values, or lower the learning rate")
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val_loss)
            elif scheduler is not None:
                scheduler.step()
            record.update(epoch=epoch, val_loss=val_loss, val_accuracy=val_acc, lr=optimizer.param_groups[0]["lr"])
            history.append(record)
            if val_loss < best["loss"]:
                if val_loss < best["loss"] * (1 - MIN_IMPROVEMENT):
                    last_progress = epoch
                best = {"loss": val_loss, "epoch": epoch, "accuracy": val_acc, "state": copy.deepcopy(net.state_dict())}
            if log is not None:
                log(f"epoch {epoch}/{max_epochs} train loss {record['train_loss']:.4f} val loss {val_loss:.4f} "
                    f"val acc {val_acc:.3f} lr {record['lr']:.1e}")
            if progress is not None:
                progress(epoch, max_epochs, record)
            if config.keep == "best" and epoch - last_progress >= patience:
                stopped = "early"
                break
    except BaseException:  # diverged, interrupted: the caller keeps a network in the default layout
        if on_cpu:
            net.to(memory_format=torch.contiguous_format)
        raise

    if config.keep == "last":
        best = {"loss": history[-1]["val_loss"], "epoch": len(history), "accuracy": history[-1]["val_accuracy"],
                "state": copy.deepcopy(net.state_dict())}
    if device is not None:
        net.to("cpu")
        x_val, y_val = x_val.cpu(), y_val.cpu()
    if on_cpu:
        net.to(memory_format=torch.contiguous_format)
    net.load_state_dict(best["state"])
    net.eval()
    notes = []
    heldout = (_logits(classify, x_val, module=net), y_val.numpy())
    message = collapse_message(predict_classes(net, finish(xt)), y)
    if message is not None:
        warnings.warn(message, CollapseWarning, stacklevel=2)
        notes.append(message)
    return TrainResult(
        state_dict=best["state"], history=history, best_epoch=int(best["epoch"]),
        best_val_loss=float(best["loss"]), best_val_accuracy=float(best["accuracy"]),
        epochs_run=len(history), max_epochs=max_epochs, stopped=stopped, n_train=len(train_idx),
        n_val=len(val_idx), seconds=time.perf_counter() - start, class_weights=weights.tolist(),
        n_symmetries=len(group), warnings=notes, heldout=heldout,
    )


SCHEDULES = ("plateau", "cosine", "constant")
KEEPS = ("best", "last")


def make_scheduler(optimizer, schedule: str, max_epochs: int):
    """The learning-rate schedule by name (None for "constant")."""
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **SCHEDULER)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs),
                                                          eta_min=SCHEDULER["min_lr"])
    if schedule == "constant":
        return None
    raise Al4dstemError(f"unknown learning-rate schedule {schedule!r} (one of {', '.join(SCHEDULES)})")


def _group(symmetries) -> tuple[Symmetry, ...]:
    from al4dstem.models.augment import ROTATIONS

    return ROTATIONS if symmetries is None else tuple(symmetries)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def stages(net: nn.Module):
    """``(canonical, classify)``: a network's resampling into canonical orientation (``_identity`` when it
    has none) and its classification of resampled inputs (logits at temperature 1)."""
    canonical = getattr(net, "canonical", None)
    if canonical is None or not getattr(canonical, "active", False):
        return _identity, (net.classify if hasattr(net, "classify") else net)
    return canonical, net.classify


def predict_classes(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class indices ``net`` (eval mode) gives network inputs ``x``."""
    return _logits(net, x, batch_size).argmax(1)


def _logits(fn, x: torch.Tensor, batch_size: int = 256, module: nn.Module | None = None) -> np.ndarray:
    (module if module is not None else fn).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            out.append(fn(x[i:i + batch_size]).numpy())
    return np.concatenate(out) if out else np.empty((0, len(CLASSES)), np.float32)


def _epoch(net, xt, yt, train_idx, batch_size, augmenter, finish, counts, loss_fn, optimizer, rng,
           after=None, device=None) -> dict:
    """One epoch of shuffled, augmented batches; returns the mean training loss. ``after``: the
    symmetry augmentation, applied in canonical orientation (networks that resample their inputs).
    ``device``: where the network is (None: the CPU); batches are augmented on the CPU, then moved."""
    net.train()
    canonical, classify = stages(net)
    total, seen = 0.0, 0
    for b in _batches(len(train_idx), batch_size, rng, EPOCH_SAMPLES):
        xb = xt[train_idx[b]]
        tb = torch.nn.functional.one_hot(yt[train_idx[b]], len(CLASSES)).float()
        if augmenter is not None:
            xb, tb = augmenter(xb, tb, rng, counts=counts)
        xb = finish(xb)
        if device is not None:
            xb, tb = xb.to(device, non_blocking=True), tb.to(device, non_blocking=True)
        zb = canonical(xb)
        if after is not None:
            if device is not None:  # the symmetries index with CPU tensors
                zb, tb = after(zb.cpu(), tb.cpu(), rng, counts=False)
                zb, tb = zb.to(device), tb.to(device)
            else:
                zb, tb = after(zb, tb, rng, counts=False)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(classify(zb), tb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(b)
        seen += len(b)
    return {"train_loss": total / seen}


def evaluate(net, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, module: nn.Module | None = None,
             batch_size: int = 256):
    """Mean loss and accuracy of ``net`` (a module, or a function of ``module``, in eval mode) on ``x``, ``y``."""
    (module if module is not None else net).eval()
    total, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = net(x[i:i + batch_size])
            total += loss_fn(logits, y[i:i + batch_size]).item() * len(logits)
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return total / len(x), correct / len(x)
