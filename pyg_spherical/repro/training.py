r"""A small, model-agnostic training loop: KL warm-up, early stopping, resumable checkpoints.

Used by the MNIST VAE benchmark (paper Appendix F.1: Adam, linear warm-up over 100 epochs, early
stopping with a look-ahead of 50 epochs on the validation ELBO) and meant to be reused by the
semi-supervised M1+M2 model (early stopping on validation accuracy, look-ahead 50).

Pieces
------
* :func:`linear_warmup` -- the KL weight ``beta(e) = min(1, (e + 1) / W)`` (Bowman et al., 2016).
* :class:`EarlyStopping` -- "look-ahead" early stopping: stop once ``patience`` epochs have passed
  without improving the best monitored value; remembers the best epoch.
* :class:`Trainer` -- runs epochs of ``train_step`` over a loader, evaluates after each epoch,
  keeps the best weights (``best.pt``) and a full resumable state (``last.pt``: model, optimiser,
  epoch, early-stopping state, history, the loader's epoch counter and the RNG states).

The library never prints: pass a tqdm-like ``progress`` factory to :meth:`Trainer.fit` for a
progress bar (the trainer only calls ``bar.set_postfix(...)`` and ``bar.update(...)`` on it).

Host synchronisation: the per-batch metrics returned by ``train_step`` are accumulated as tensors
and read back once per epoch; with a progress bar the running means are also read back every
``log_every`` batches (one sync each).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["EarlyStopping", "SeededEpochs", "SemiSupervisedLoader", "Trainer", "epoch_seed",
           "linear_warmup", "save_atomic", "training_segments", "write_text_atomic"]


def linear_warmup(epoch: int, warmup_epochs: int, start: float = 0.0) -> float:
    r"""Linear KL warm-up weight for the (0-indexed) ``epoch``.

    ``beta = start + (1 - start) * min(1, (epoch + 1) / warmup_epochs)``, so ``beta`` reaches 1 at
    the end of epoch ``warmup_epochs - 1`` and stays there; ``warmup_epochs <= 0`` gives 1.
    """
    if warmup_epochs <= 0:
        return 1.0
    return start + (1.0 - start) * min(1.0, (epoch + 1) / warmup_epochs)


class EarlyStopping:
    """Early stopping with a look-ahead of ``patience`` epochs.

    After each epoch call :meth:`step` with the monitored value; it returns whether it improved the
    best value (by more than ``min_delta``). :attr:`should_stop` becomes true once ``patience``
    consecutive epochs brought no improvement, but never before ``min_epochs`` epochs have been
    seen (e.g. the KL warm-up, during which the objective still changes).

    Args:
        patience (int): look-ahead in epochs (paper: 50).
        mode (str): ``"max"`` (ELBO, accuracy) or ``"min"`` (loss).
        min_delta (float): minimum change that counts as an improvement.
        min_epochs (int): never stop before this many epochs.
    """

    def __init__(self, patience: int = 50, mode: str = "max", min_delta: float = 0.0,
                 min_epochs: int = 0):
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping: mode must be 'max' or 'min', got {mode!r}.")
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}.")
        self.patience, self.mode = int(patience), mode
        self.min_delta, self.min_epochs = float(min_delta), int(min_epochs)
        self.best: float | None = None
        self.best_epoch: int = -1
        self.num_bad: int = 0
        self.seen: int = 0

    def is_better(self, value: float) -> bool:
        """Whether ``value`` improves on the best so far (by more than ``min_delta``)."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, value: float, epoch: int | None = None) -> bool:
        """Record an epoch's monitored value; returns ``True`` if it is the new best."""
        epoch = self.seen if epoch is None else int(epoch)
        self.seen += 1
        if self.is_better(float(value)):
            self.best, self.best_epoch, self.num_bad = float(value), epoch, 0
            return True
        self.num_bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        """``patience`` consecutive epochs without improvement, after at least ``min_epochs``."""
        return self.num_bad >= self.patience and self.seen >= self.min_epochs

    def state_dict(self) -> dict:
        """Best value, its epoch and the counter, for checkpoints."""
        return {k: getattr(self, k) for k in
                ("patience", "mode", "min_delta", "min_epochs", "best", "best_epoch", "num_bad",
                 "seen")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state written by :meth:`state_dict`."""
        for k, v in state.items():
            setattr(self, k, v)


def _replace_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: ``path``
    is the old file or the whole new one, never a torn one, whatever interrupts the write (and
    the temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` without ever leaving a torn checkpoint."""
    _replace_atomic(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` without ever leaving a half-written file (results, JSON)."""
    _replace_atomic(path, lambda tmp: tmp.write_text(text))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_segments(state: Mapping[str, Any]) -> list[dict]:
    """The training sessions a checkpoint ``state`` lists (:attr:`Trainer.segments`). One
    written before they were recorded gets ``[{"first_epoch": 1, "unrecorded": True}]`` for
    the epochs it holds, so that a later session never looks like the whole run."""
    if "segments" in state:
        return list(state["segments"])
    return [{"first_epoch": 1, "unrecorded": True}] if state.get("epoch", 0) else []


class Trainer:
    r"""Epoch loop with evaluation, early stopping, best-model tracking and resumable checkpoints.

    Args:
        model (nn.Module): the model (its ``state_dict`` is checkpointed).
        optimizer (torch.optim.Optimizer): optimiser over the model's parameters.
        train_step (callable): ``train_step(batch, epoch) -> dict`` with a differentiable scalar
            ``"loss"`` and optionally more *detached* scalar (or per-example) tensors to average
            over the epoch (e.g. ``"elbo"``); called in training mode. The trainer does
            ``zero_grad / backward / step``.
        evaluate (callable): ``evaluate(model, epoch) -> dict[str, float]`` after every epoch,
            called in eval mode under ``torch.no_grad()``; must contain ``monitor``.
        monitor (str): key of ``evaluate``'s result used for early stopping / best model.
        early_stopping (EarlyStopping, optional): default ``EarlyStopping(50, "max")``.
        max_epochs (int): hard cap on the total number of epochs.
        checkpoint_dir (path, optional): where ``last.pt`` and ``best.pt`` go; ``None``: keep the
            best weights in memory only.
        checkpoint_every (int): write ``last.pt`` every this many epochs (and at the end).
        grad_clip (float, optional): clip the global gradient norm (off by default).
        log_every (int): with a progress bar, refresh its running means every this many batches.

    Attributes:
        epoch (int): number of completed epochs.
        history (list[dict]): one record per epoch (train means, eval results, ``beta``-like
            extras, ``time_s`` of the epoch and ``eval_time_s``).
        best_state (dict): ``state_dict`` of the best epoch (in memory).
        stop_reason (str or None): ``"early_stopping"`` or ``"max_epochs"`` once finished.
        segments (list[dict]): what the caller records about each training session of a run
            resumed across sessions (the benchmarks: first epoch, command, commit, machine);
            saved in the checkpoints. A checkpoint written before it existed resumes with one
            entry ``{"first_epoch": 1, "unrecorded": True}`` for the epochs it already holds.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 train_step: Callable[[Any, int], Mapping[str, Tensor]],
                 evaluate: Callable[[nn.Module, int], Mapping[str, float]], *,
                 monitor: str = "elbo", early_stopping: EarlyStopping | None = None,
                 max_epochs: int = 1000, checkpoint_dir: str | os.PathLike | None = None,
                 checkpoint_every: int = 1, grad_clip: float | None = None,
                 log_every: int = 50):
        self.model, self.optimizer = model, optimizer
        self.train_step, self.evaluate = train_step, evaluate
        self.monitor = monitor
        self.stopper = early_stopping if early_stopping is not None else EarlyStopping()
        self.max_epochs = int(max_epochs)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.grad_clip = grad_clip
        self.log_every = max(1, int(log_every))
        self.epoch = 0
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.stop_reason: str | None = None
        self.loader_epoch: int | None = None
        # one entry per training session of a resumed run (what ran it: commit, machine), so
        # that a run trained across sessions and machines says so in its checkpoint
        self.segments: list[dict] = []

    # ------------------------------------------------------------------ checkpoints
    @property
    def last_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / "last.pt"

    @property
    def best_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / "best.pt"

    def state_dict(self) -> dict:
        """Model, optimiser, early-stopping and history state, for a resumable checkpoint."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "early_stopping": self.stopper.state_dict(),
            "history": self.history,
            "stop_reason": self.stop_reason,
            "loader_epoch": self.loader_epoch,
            "segments": self.segments,
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state written by :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self.stop_reason = state.get("stop_reason")
        self.loader_epoch = state.get("loader_epoch")
        self.segments = training_segments(state)
        if state.get("rng") is not None:
            _set_rng_state(state["rng"])
        self._update_stop()  # a larger max_epochs than the saved run's continues it

    def save(self) -> None:
        """Write ``last.pt`` (atomically) to the checkpoint directory."""
        if self.last_path is not None:
            save_atomic(self.state_dict(), self.last_path)

    def resume(self, map_location=None) -> bool:
        """Load ``last.pt`` (and the best weights) if present; returns whether it did."""
        if self.last_path is None or not self.last_path.is_file():
            return False
        state = torch.load(self.last_path, map_location=map_location, weights_only=False)
        self.load_state_dict(state)
        if self.best_path is not None and self.best_path.is_file():
            best = torch.load(self.best_path, map_location=map_location, weights_only=False)
            self.best_state = best["model"]
        return True

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def _update_stop(self) -> None:
        if self.stopper.should_stop:
            self.stop_reason = "early_stopping"
        elif self.epoch >= self.max_epochs:
            self.stop_reason = "max_epochs"
        else:
            self.stop_reason = None

    # ------------------------------------------------------------------------ loop
    def train_epoch(self, loader: Iterable, progress: Callable | None = None) -> dict:
        """One pass over ``loader``; returns the epoch means of ``train_step``'s outputs."""
        self.model.train()
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        bar = None
        if progress is not None:
            total = len(loader) if hasattr(loader, "__len__") else None
            bar = progress(total=total, desc=f"epoch {self.epoch + 1}", leave=False)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for i, batch in enumerate(loader):
            out = self.train_step(batch, self.epoch)
            loss = out["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.optimizer.step()
            for k, v in out.items():
                v = v.detach()
                n = v.numel()
                s = v.sum() if n > 1 else v.reshape(())
                n = n if v.numel() > 1 else 1
                sums[k] = sums[k] + s if k in sums else s
                counts[k] = counts.get(k, 0) + n
            if bar is not None:
                bar.update(1)
                if (i + 1) % self.log_every == 0:
                    bar.set_postfix({k: f"{(sums[k] / counts[k]).item():.2f}" for k in sums})
        if bar is not None:
            bar.close()
        if not sums:
            raise ValueError("Trainer: the training loader produced no batches.")
        keys = list(sums)
        means = (torch.stack([sums[k] for k in keys]).double().cpu()
                 / torch.tensor([counts[k] for k in keys], dtype=torch.float64))
        return {f"train_{k}": float(v) for k, v in zip(keys, means.tolist())}

    def fit(self, loader: Iterable, *, progress: Callable | None = None,
            max_new_epochs: int | None = None,
            on_epoch_end: Callable[[Trainer, dict], None] | None = None) -> list[dict]:
        """Train until early stopping, ``max_epochs``, or ``max_new_epochs`` more epochs.

        If the loader has an ``epoch`` attribute (e.g.
        :class:`~pyg_spherical.repro.datasets.DynamicBinarizedLoader`), it is restored on resume and saved in checkpoints, so that the
        per-epoch binarisation continues where it stopped.

        Returns the history (all epochs, including earlier sessions).
        """
        if self.loader_epoch is not None and hasattr(loader, "epoch"):
            loader.epoch = self.loader_epoch
        self._update_stop()
        done_now = 0
        while not self.finished and (max_new_epochs is None or done_now < max_new_epochs):
            t0 = time.perf_counter()
            record = {"epoch": self.epoch + 1}
            record.update(self.train_epoch(loader, progress))
            t1 = time.perf_counter()
            self.model.eval()
            with torch.no_grad():
                ev = dict(self.evaluate(self.model, self.epoch))
            self.model.train()
            if self.monitor not in ev:
                raise KeyError(f"Trainer: evaluate() did not return the monitored key "
                               f"{self.monitor!r} (got {sorted(ev)}).")
            record.update({f"val_{k}": float(v) for k, v in ev.items()})
            record["time_s"] = t1 - t0
            record["eval_time_s"] = time.perf_counter() - t1
            improved = self.stopper.step(float(ev[self.monitor]), self.epoch)
            record["best"] = improved
            self.epoch += 1
            done_now += 1
            if hasattr(loader, "epoch"):
                self.loader_epoch = int(loader.epoch)
            self.history.append(record)
            if improved:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                if self.best_path is not None:
                    save_atomic({"model": self.best_state, "epoch": self.epoch, "record": record},
                                self.best_path)
            self._update_stop()
            if self.finished or self.epoch % self.checkpoint_every == 0:
                self.save()
            if on_epoch_end is not None:
                on_epoch_end(self, record)
        if done_now and not self.finished:
            self.save()
        return self.history

    def load_best(self) -> None:
        """Copy the best weights seen so far into the model (no-op if none yet)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def epoch_seed(seed: int, epoch: int, *salt: int) -> int:
    """A 63-bit seed for epoch ``epoch`` of a loader seeded with ``seed`` (``salt`` separates the
    streams of different loaders), from NumPy's ``SeedSequence``."""
    state = np.random.SeedSequence([seed, epoch, *salt]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededEpochs:
    """Base of the loaders whose epoch ``e`` draws from a generator seeded with ``(seed, e)``.

    ``iter(loader)`` is one epoch: a fresh generator on ``device``, then :meth:`_batches`.
    ``epoch`` is the next epoch's index, so setting it resumes a run (the
    :class:`~pyg_spherical.repro.training.Trainer` does). Subclasses set ``seed``, ``epoch`` and
    ``device`` and implement ``_batches(generator)``.
    """

    #: extra entropy that separates this loader's streams from another's with the same seed
    _salt: tuple[int, ...] = ()
    seed: int
    epoch: int
    device: torch.device

    def __iter__(self):
        g = torch.Generator(device=self.device)
        g.manual_seed(epoch_seed(self.seed, self.epoch, *self._salt))
        self.epoch += 1
        return self._batches(g)

    def _batches(self, g: torch.Generator):
        raise NotImplementedError


class SemiSupervisedLoader(SeededEpochs):
    """Mini-batches ``(x_l, y_l, x_u)`` for semi-supervised training, re-binarised every draw.

    One epoch is one shuffled pass over the unlabelled rows in batches of ``batch_size``; every
    step also yields ``labelled_batch_size`` labelled rows, taken in order from a stream of
    fresh permutations of the labelled set (with 100 labels and ``labelled_batch_size = 100``
    every step sees all of them). Images are Bernoulli-binarised per draw (dynamic
    binarisation). The randomness of epoch ``e`` comes from a generator seeded with
    ``(seed, e)``; ``epoch`` is the next epoch's index, so setting it resumes a run (the
    :class:`~pyg_spherical.repro.training.Trainer` does).

    Args:
        x_l: ``(N_l, D)`` labelled grey levels in ``[0, 1]``; ``y_l``: ``(N_l,)``.
        x_u: ``(N_u, D)`` unlabelled grey levels.
        batch_size: unlabelled rows per step (100).
        labelled_batch_size: labelled rows per step (default ``min(batch_size, N_l)``).
        seed: base seed.
        binarize: draw Bernoulli images (default) or yield the inputs as they are.
        drop_last: drop the last incomplete unlabelled batch.
    """

    _salt = (0x5E11,)  # separates its streams from a DynamicBinarizedLoader's

    def __init__(self, x_l: Tensor, y_l: Tensor, x_u: Tensor, *, batch_size: int = 100,
                 labelled_batch_size: int | None = None, seed: int = 0, binarize: bool = True,
                 drop_last: bool = False):
        if x_l.shape[0] != y_l.shape[0] or x_l.shape[0] < 1:
            raise ValueError("SemiSupervisedLoader: x_l and y_l need the same, non-zero length.")
        if x_u.shape[0] < 1 or batch_size < 1:
            raise ValueError("SemiSupervisedLoader: need unlabelled rows and batch_size >= 1.")
        self.x_l, self.y_l, self.x_u = x_l, y_l, x_u.to(x_l.device)
        self.batch_size = int(batch_size)
        self.labelled_batch_size = int(labelled_batch_size or min(batch_size, x_l.shape[0]))
        if not 1 <= self.labelled_batch_size <= x_l.shape[0]:
            raise ValueError("SemiSupervisedLoader: labelled_batch_size must be in [1, N_l].")
        self.seed, self.binarize, self.drop_last = int(seed), binarize, drop_last
        self.device = x_l.device
        self.epoch = 0

    def __len__(self) -> int:
        n = self.x_u.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self, g: torch.Generator):
        dev, steps = self.x_l.device, len(self)
        n_u, n_l, bl = self.x_u.shape[0], self.x_l.shape[0], self.labelled_batch_size
        order = torch.randperm(n_u, generator=g, device=dev)
        n_perm = -(-steps * bl // n_l)
        lab = torch.argsort(torch.rand(n_perm, n_l, generator=g, device=dev), dim=1).reshape(-1)
        for b in range(steps):
            iu = order[b * self.batch_size:(b + 1) * self.batch_size]
            il = lab[b * bl:(b + 1) * bl]
            xu = self.x_u.index_select(0, iu)
            xl = self.x_l.index_select(0, il)
            if self.binarize:
                xu = torch.bernoulli(xu, generator=g)
                xl = torch.bernoulli(xl, generator=g)
            yield xl, self.y_l.index_select(0, il), xu
