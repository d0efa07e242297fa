"""The README's Python snippets run as written (each in a fresh namespace)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_the_quick_start_snippets():
    assert len(SNIPPETS) >= 3
    assert any("SphericalVGAE(VariationalGCNEncoder" in s for s in SNIPPETS)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = compile(SNIPPETS[index], f"README.md snippet {index}", "exec")
        exec(code, {"__name__": "readme"})  # noqa: S102 - the README is ours
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    if "AUC" in SNIPPETS[index]:
        # the drop-in trains: 100 epochs on Cora land far above chance (0.5)
        auc = float(re.search(r"AUC ([0-9.]+)", out).group(1))
        assert auc > 0.85, out
    if "VAE(" in SNIPPETS[index]:
        # the MNIST snippet prints what it computes, which adds up: ELBO = RE - KL
        elbo, rec, kl, ll = map(float, re.search(
            r"ELBO (\S+) = RE (\S+) - KL (\S+), log p\(x\) (\S+) ", out).groups())
        assert elbo == pytest.approx(rec - kl, abs=0.011) and kl > 0 and ll < 0, out
