"""The README's Python snippets run as written (each in a fresh namespace), and its quick start
trains."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
#: the first snippet of the Quick start: PyG's example with the model class swapped
QUICK_START = re.search(r"```python\n(.*?)```", README.split("## Quick start", 1)[-1],
                        flags=re.DOTALL)


def _run(code: str, name: str, capsys) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, name, "exec"), {"__name__": "readme"})  # noqa: S102 - the README is ours
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def test_the_quick_start_trains_as_written(capsys):
    """The drop-in runs as written and learns: 100 epochs on Cora land far above chance (0.5)."""
    out = _run(QUICK_START.group(1), "README.md quick start", capsys)
    auc = float(re.search(r"AUC ([0-9.]+)", out).group(1))
    assert auc > 0.85, out


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, capsys):
    if QUICK_START is not None and SNIPPETS[index] == QUICK_START.group(1):
        pytest.skip("the quick start: run by test_the_quick_start_trains_as_written")
    out = _run(SNIPPETS[index], f"README.md snippet {index}", capsys)
    if "VAE(" in SNIPPETS[index]:
        # the MNIST snippet prints what it computes, which adds up: ELBO = RE - KL
        elbo, rec, kl, ll = map(float, re.search(
            r"ELBO (\S+) = RE (\S+) - KL (\S+), log p\(x\) (\S+) ", out).groups())
        assert elbo == pytest.approx(rec - kl, abs=0.011) and kl > 0 and ll < 0, out
