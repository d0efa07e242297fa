"""Small helpers shared by the library's modules."""
from __future__ import annotations

import numpy as np
import torch


def to_numpy(x, dtype=None) -> np.ndarray:
    """A NumPy array of a tensor (``.detach().cpu()``; bfloat16 via float32) or array-like,
    converted to ``dtype`` if given (no copy when it already has that dtype)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        try:
            x = t.numpy()
        except TypeError:  # bfloat16 has no NumPy equivalent
            x = t.float().numpy()
    return np.asarray(x, dtype=dtype)


def epoch_seed(seed: int, epoch: int, *salt: int) -> int:
    """A 63-bit seed for epoch ``epoch`` of a loader seeded with ``seed`` (``salt`` separates the
    streams of different loaders), from NumPy's ``SeedSequence``."""
    state = np.random.SeedSequence([seed, epoch, *salt]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededEpochs:
    """Base of the loaders whose epoch ``e`` draws from a generator seeded with ``(seed, e)``.

    ``iter(loader)`` is one epoch: a fresh generator on :attr:`device`, then :meth:`_batches`.
    :attr:`epoch` is the next epoch's index, so setting it resumes a run (the
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
