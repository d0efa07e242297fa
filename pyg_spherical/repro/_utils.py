"""Small helpers shared by the reproduction kit's modules."""
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
