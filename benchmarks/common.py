"""Shared pieces of the benchmark CLIs: the paper's reference numbers, run metadata and JSON
output, the command-line interface (parser, common flags, data and checkpoint loading), the
settings of the link-prediction runs and the M1+M2 training protocol. It is the one module a
benchmark imports from another file of this folder.

The paper's numbers live here and only here (one source of truth); every benchmark prints them
beside ours and stores both in its JSON.

Every CLI writes its JSON and figures to the ignored ``runs/`` by default, to the committed
``results/`` only with ``--refresh`` (or to ``--out-dir DIR``), and reads back what it aggregates
from the same folder. Bad input ends in one ``error: ...`` line and exit code 2.

The scripts are run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``
(the tests run them so too).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pickle
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
#: committed results: written only on an explicit ``--refresh``
RESULTS = REPO / "results"
#: ad-hoc run outputs (ignored by git): a user's run never dirties the checkout
RUNS = REPO / "runs"

# ---------------------------------------------------------------------------------------------
# Reference values from Davidson et al. (UAI 2018).
# Table 1: MNIST, mean (std over 10 runs): LL, ELBO L[q], RE, KL.
PAPER_TABLE1 = {
    "normal": {
        2: {"LL": (-135.73, 0.83), "ELBO": (-137.08, 0.83), "RE": (-129.84, 0.91), "KL": (7.24, 0.11)},
        5: {"LL": (-110.21, 0.21), "ELBO": (-112.98, 0.21), "RE": (-100.16, 0.22), "KL": (12.82, 0.11)},
        10: {"LL": (-93.84, 0.30), "ELBO": (-98.36, 0.30), "RE": (-78.93, 0.30), "KL": (19.44, 0.14)},
        20: {"LL": (-88.90, 0.26), "ELBO": (-94.79, 0.19), "RE": (-71.29, 0.45), "KL": (23.50, 0.31)},
        40: {"LL": (-88.93, 0.30), "ELBO": (-94.91, 0.18), "RE": (-71.14, 0.56), "KL": (23.77, 0.49)},
    },
    "vmf": {
        2: {"LL": (-132.50, 0.73), "ELBO": (-133.72, 0.85), "RE": (-126.43, 0.91), "KL": (7.28, 0.14)},
        5: {"LL": (-108.43, 0.09), "ELBO": (-111.19, 0.08), "RE": (-97.84, 0.13), "KL": (13.35, 0.06)},
        10: {"LL": (-93.16, 0.31), "ELBO": (-97.70, 0.32), "RE": (-77.03, 0.39), "KL": (20.67, 0.08)},
        20: {"LL": (-89.02, 0.31), "ELBO": (-96.15, 0.32), "RE": (-67.65, 0.43), "KL": (28.50, 0.22)},
        40: {"LL": (-90.87, 0.34), "ELBO": (-101.26, 0.33), "RE": (-67.75, 0.70), "KL": (33.50, 0.45)},
    },
}
# Table 2: M1 + 5-NN test accuracy (%), mean (std over 20 draws), by d and number of labels N.
PAPER_TABLE2 = {
    "normal": {
        2: {100: (72.6, 2.1), 600: (80.8, 0.5), 1000: (81.7, 0.5)},
        5: {100: (81.8, 2.0), 600: (90.9, 0.4), 1000: (92.0, 0.2)},
        10: {100: (75.7, 1.8), 600: (88.4, 0.5), 1000: (90.2, 0.4)},
        20: {100: (71.3, 1.9), 600: (88.3, 0.5), 1000: (90.1, 0.4)},
        40: {100: (72.3, 1.6), 600: (88.0, 0.5), 1000: (90.3, 0.5)},
    },
    "vmf": {
        2: {100: (77.9, 1.6), 600: (84.9, 0.6), 1000: (85.6, 0.5)},
        5: {100: (87.5, 1.0), 600: (92.8, 0.3), 1000: (93.4, 0.2)},
        10: {100: (80.6, 1.3), 600: (91.2, 0.4), 1000: (92.8, 0.3)},
        20: {100: (72.8, 1.6), 600: (89.1, 0.6), 1000: (91.1, 0.3)},
        40: {100: (67.7, 2.3), 600: (87.4, 0.7), 1000: (90.4, 0.4)},
    },
}
# Table 3: M1+M2 accuracy (%) with 100 labels, keyed (dim z1, dim z2) -> {"N+N", "S+S", "S+N"}.
PAPER_TABLE3 = {
    (5, 5): {"N+N": (90.0, 0.4), "S+S": (94.0, 0.1), "S+N": (93.8, 0.1)},
    (5, 10): {"N+N": (90.7, 0.3), "S+S": (94.1, 0.1), "S+N": (94.8, 0.2)},
    (5, 50): {"N+N": (90.7, 0.1), "S+S": (92.7, 0.2), "S+N": (93.0, 0.1)},
    (10, 5): {"N+N": (90.7, 0.3), "S+S": (91.7, 0.5), "S+N": (94.0, 0.4)},
    (10, 10): {"N+N": (92.2, 0.1), "S+S": (96.0, 0.2), "S+N": (95.9, 0.3)},
    (10, 50): {"N+N": (92.9, 0.4), "S+S": (95.1, 0.2), "S+N": (95.7, 0.1)},
    (50, 5): {"N+N": (92.0, 0.2), "S+S": (91.7, 0.4), "S+N": (95.8, 0.1)},
    (50, 10): {"N+N": (93.0, 0.1), "S+S": (95.8, 0.1), "S+N": (97.1, 0.1)},
    (50, 50): {"N+N": (93.2, 0.2), "S+S": (94.2, 0.1), "S+N": (97.4, 0.1)},
}
# Table 4: link prediction, AUC / AP in %, mean (standard error over 5 runs).
PAPER_TABLE4 = {
    "Cora": {"vgae": {"AUC": (92.7, 0.2), "AP": (93.2, 0.4)}, "svgae": {"AUC": (94.1, 0.1), "AP": (94.1, 0.3)}},
    "CiteSeer": {"vgae": {"AUC": (90.3, 0.5), "AP": (91.5, 0.5)}, "svgae": {"AUC": (94.7, 0.2), "AP": (95.2, 0.2)}},
    "PubMed": {"vgae": {"AUC": (97.1, 0.0), "AP": (97.1, 0.0)}, "svgae": {"AUC": (96.0, 0.1), "AP": (96.0, 0.1)}},
}
# Table 7: best hyper-parameters (lr, dropout, latent dim) per data set and model.
PAPER_TABLE7 = {
    "Cora": {"vgae": (0.005, 0.4, 64), "svgae": (0.001, 0.1, 32)},
    "CiteSeer": {"vgae": (0.01, 0.4, 64), "svgae": (0.005, 0.2, 32)},
    "PubMed": {"vgae": (0.001, 0.2, 32), "svgae": (0.01, 0.0, 32)},
}
# Our link-prediction settings (lr, dropout, latent dim[, epochs]) per data set and model, the
# defaults of benchmarks/linkpred.py; both models selected the same way, on validation AUC:
#   python benchmarks/linkpred.py --dataset <name> --model both --grid --grid-top 5 \
#       --grid-top-runs 3 --runs 5 --refresh --out linkpred_<name>_grid
# over lr {0.01, 0.005, 0.001} x dropout {0, ..., 0.4} x d {8, 16, 32, 64, 128} at 200 epochs, one
# run per point (seed 1000), then the 5 best points of each model again with seeds 1001-1002 and
# the pick on their 3-seed mean (results/linkpred_<name>_grid.json).
# PubMed: both models over the subset lr 0.01 x dropout 0 x d {16, 32} x epochs {200, 400, 1000,
# 2000} (--grid-lr 0.01 --grid-dropout 0 --grid-dim 16 32 --grid-epochs 200 400 1000 2000
# --grid-only; results/linkpred_pubmed_grid_{vgae,svgae}.json): both pick d 32 at 2000 epochs.
SELECTED_SETTINGS = {
    "Cora": {"vgae": (0.01, 0.4, 128), "svgae": (0.01, 0.3, 16)},
    "CiteSeer": {"vgae": (0.001, 0.0, 128), "svgae": (0.01, 0.1, 128)},
    "PubMed": {"vgae": (0.01, 0.0, 32, 2000), "svgae": (0.01, 0.0, 32, 2000)},
}
#: the initial decoder scale of the searches above (the library's DEFAULT_SCALE_INIT is chosen
#: separately, by linkpred.py --grid-datasets Cora CiteSeer: results/linkpred_defaults_grid.json)
SEARCH_SCALE_INIT = 5.0
# Table 5: expected number of proposals of the Ulrich/Wood sampler, by d (= m) and kappa.
PAPER_TABLE5_KAPPAS = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000)
PAPER_TABLE5 = {
    5: (1.020, 1.171, 1.268, 1.398, 1.397, 1.426, 1.458, 1.416, 1.440),
    10: (1.008, 1.094, 1.154, 1.352, 1.411, 1.407, 1.369, 1.402, 1.419),
    20: (1.001, 1.031, 1.085, 1.305, 1.342, 1.367, 1.409, 1.410, 1.407),
    40: (1.000, 1.011, 1.027, 1.187, 1.288, 1.397, 1.433, 1.402, 1.423),
    100: (1.000, 1.000, 1.006, 1.092, 1.163, 1.317, 1.360, 1.398, 1.416),
}


def run_metadata(args=None) -> dict:
    """:func:`pyg_spherical.repro.provenance.run_metadata` of this checkout."""
    from pyg_spherical.repro import provenance

    return provenance.run_metadata(args, repo=REPO)


def write_json(name: str, payload: dict, started: float | None = None,
               directory: Path | None = None) -> Path:
    """Write ``<directory>/<name>.json`` (with ``wall_time_s`` if ``started`` is given); pass
    :func:`out_dir` as ``directory`` (the default, ``runs/``, never dirties the checkout)."""
    directory = RUNS if directory is None else directory
    if started is not None:
        payload["wall_time_s"] = round(time.time() - started, 2)
    path = directory / name if name.endswith(".json") else directory / f"{name}.json"
    from pyg_spherical.repro.training import write_text_atomic

    # an interrupted run never leaves a half-written result
    write_text_atomic(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def wrote(path, note: str = "") -> None:
    """Print ``wrote <absolute path><note>``: usable from any working directory."""
    print(f"wrote {Path(path).resolve()}{note}", flush=True)


def _jsonable(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def fmt(mean: float, err: float | None = None, digits: int = 2) -> str:
    """``mean ± err``; just the mean when there is no spread to show (``err`` is ``None`` or not
    finite, e.g. a single run)."""
    if err is None or not math.isfinite(err):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {err:.{digits}f}"


def fmt_runs(mean: float, err: float | None, n: int, digits: int = 2) -> str:
    """``mean ± err`` over ``n > 1`` runs; ``mean (n=1)`` for a single run."""
    return fmt(mean, err, digits) if n > 1 else f"{mean:.{digits}f} (n=1)"


# ---------------------------------------------------------------------------------------------
# The command-line interface
# ---------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with a single ``error: ...`` line (no usage text) and exit code 2 on bad input.

    Checked before any work starts: ``--out`` is a name (no folder part) and ``--out-dir`` is
    not a file (it would fail only when the results are written)."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        name = getattr(ns, "out", None)
        if isinstance(name, str) and (not name or "/" in name or os.sep in name
                                      or name in (".", "..")):
            self.error(f"argument --out: a file name, without a folder, got {name!r}; "
                       "--out-dir DIR picks the folder")
        if getattr(ns, "out_dir", None):
            d = Path(ns.out_dir).expanduser().resolve()
            for q in (d, *d.parents):
                if q.exists():
                    if not q.is_dir():
                        self.error(f"argument --out-dir: {q} is a file, not a folder")
                    break
        return ns


def warn_ignored(p: argparse.ArgumentParser, args, dests, why: str) -> None:
    """One ``warning: --flag does nothing <why>`` line per flag of ``dests`` set to anything
    but its default: a flag the chosen mode ignores is never dropped silently."""
    for dest in dests:
        if getattr(args, dest, None) != p.get_default(dest):
            sys.stderr.write(f"warning: --{dest.replace('_', '-')} does nothing {why}\n")


def interruptible(kept: str):
    """Decorate a CLI's ``main``: Ctrl-C ends it with one ``interrupted: <kept>`` line (what the
    run left behind) and exit code 130, instead of a traceback; only rank 0 of a ``torchrun``
    job prints it."""
    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                if os.environ.get("RANK", "0") == "0":
                    end_bar = "\n" if sys.stderr.isatty() else ""  # after a progress bar
                    sys.stderr.write(f"{end_bar}interrupted: {kept}\n")
                raise SystemExit(130) from None
        return run
    return wrap


def fail(message: str, code: int = 2) -> NoReturn:
    """End the CLI with one ``error: <message>`` line on stderr (exit 2: bad input)."""
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


def _number(kind, value):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a{'n' if kind is int else ''} "
                                         f"{kind.__name__}, got {value!r}") from None


def at_least(kind, low):
    """``argparse`` type: a finite number ``>= low`` of type ``kind``."""
    def parse(value):
        v = _number(kind, value)
        if not v >= low or (isinstance(v, float) and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return v
    return parse


def fraction(value) -> float:
    """``argparse`` type: a number in ``[0, 1]``."""
    v = _number(float, value)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return v


def positive(kind):
    """``argparse`` type: a finite number ``> 0`` of type ``kind`` (``int`` or ``float``)."""
    def parse(value):
        v = _number(kind, value)
        if not v > 0 or (isinstance(v, float) and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {value}")
        return v
    return parse


def non_negative(kind):
    """``argparse`` type: a finite number ``>= 0`` of type ``kind``."""
    def parse(value):
        v = _number(kind, value)
        if not v >= 0 or (isinstance(v, float) and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be >= 0 and finite, got {value}")
        return v
    return parse


#: seeds are 32-bit (NumPy's legacy seeding takes no more; torch's takes 64 bits)
SEED_LIMIT = 2**32


def seed_int(value) -> int:
    """``argparse`` type: an integer seed in ``[0, 2**32)``."""
    v = _number(int, value)
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {value}")
    return v


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def device_type(value) -> torch.device:
    """``argparse`` type: ``auto | cpu | cuda[:N] | mps`` -> an available ``torch.device``."""
    if isinstance(value, torch.device):
        return value
    if value == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"unknown device {value!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{value} requested but CUDA is not available "
                                             "(use --device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{value}: there are {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not _mps_available():
            raise argparse.ArgumentTypeError(f"{value} requested but MPS is not available "
                                             "(use --device cpu or auto)")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(
            f"unsupported device {value!r}; choose auto, cpu, cuda, cuda:N or mps")
    return dev


def device_arg(name) -> torch.device:
    """:func:`device_type` outside argparse: one ``error:`` line (exit 2) if unavailable."""
    try:
        return device_type(name)
    except argparse.ArgumentTypeError as e:
        fail(f"argument --device: {e}")


#: every CLI runs one torch thread unless --threads says otherwise (the README's policy): small
#: models gain little from more, and on a shared machine more threads than free cores is slower
THREADS_DEFAULT = 1


def add_common_args(p: argparse.ArgumentParser, *, data: bool = True, device_default="auto",
                    threads_default: int | None = THREADS_DEFAULT, seed_default: int | None = 0,
                    seed_help: str = "base seed (default 0)", outputs: bool = True) -> None:
    """The flags every benchmark shares: ``--root --no-download`` (``data``), ``--device``
    (unless ``device_default`` is ``None``), ``--threads``, ``--seed`` (unless ``seed_default``
    is ``None``), ``--no-progress`` and ``--refresh`` / ``--out-dir`` (``outputs``)."""
    if data:
        p.add_argument("--root", default=None,
                       help="data root (default $PYG_SPHERICAL_DATA; Cora and CiteSeer are "
                            "packaged)")
        p.add_argument("--no-download", action="store_true", help="never download missing data")
    if device_default is not None:
        p.add_argument("--device", type=device_type, default=device_default,
                       help=f"auto, cpu, cuda[:N] or mps (default {device_default})")
    p.add_argument("--threads", type=positive(int), default=threads_default,
                   help="torch CPU threads" + (f" (default {threads_default})"
                                               if threads_default else ""))
    if seed_default is not None:
        p.add_argument("--seed", type=seed_int, default=seed_default, help=seed_help)
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    if outputs:
        where = p.add_mutually_exclusive_group()
        where.add_argument("--refresh", action="store_true",
                           help="write to (and aggregate from) the committed results/ instead "
                                "of the ignored runs/")
        where.add_argument("--out-dir", default=None, metavar="DIR",
                           help="write to (and aggregate from) DIR instead of runs/")


def add_mnist_run_args(p, checkpoint_dir=None, seed_help="seed of the run (default 0)") -> None:
    """The flags of the MNIST benchmarks: :func:`add_common_args`, the fixed binarisation's seed,
    the smoke-run subsets and (unless ``checkpoint_dir`` is ``None``: a benchmark that keeps no
    checkpoints) ``--checkpoint-dir`` and ``--use-checkpoint-settings``."""
    p.add_argument("--eval-seed", type=seed_int, default=1234,
                   help="seed of the fixed binarisation")
    if checkpoint_dir is not None:
        p.add_argument("--checkpoint-dir", default=str(checkpoint_dir),
                       help=f"resumable checkpoints (default {shown(checkpoint_dir)})")
        add_resume_args(p)
    p.add_argument("--train-subset", type=non_negative(int), default=0,
                   help="use only N training images (smoke runs; 0: all)")
    p.add_argument("--eval-subset", type=non_negative(int), default=0,
                   help="use only N val/test images (smoke runs; 0: all)")
    add_common_args(p, seed_help=seed_help)


def set_threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def out_dir(args) -> Path:
    """Where a CLI writes and reads its outputs: ``--out-dir``, else ``results/`` with
    ``--refresh``, else the ignored ``runs/``."""
    if getattr(args, "out_dir", None):
        return Path(args.out_dir).expanduser().resolve()
    return RESULTS if getattr(args, "refresh", False) else RUNS


def shown(path) -> str:
    """``path`` relative to the repository when inside it (for ``wrote ...`` lines)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def args_for_json(args) -> argparse.Namespace:
    """The parsed flags without the private ``_``-prefixed entries a run attaches (data)."""
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if not k.startswith("_")})


def start_segment(trainer, args) -> None:
    """Record in ``trainer`` (and so in its checkpoints) that this command trains it from the
    next epoch on: its command, commit, machine and start time. A run resumed across sessions
    or machines then lists each part (``training`` in its result file)."""
    # the flags as this session used them (--use-checkpoint-settings may have replaced some);
    # the result file's own meta describes the command that evaluated the run
    trainer.segments.append({"first_epoch": trainer.epoch + 1,
                             **run_metadata(args_for_json(args))})


# ------------------------------------------------------------------------------- progress
def show_progress(args) -> bool:
    """Progress bars only on a terminal: tqdm on a pipe or file writes every refresh as a
    carriage-return line into the log. ``--no-progress`` turns them off everywhere."""
    if getattr(args, "no_progress", False):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(args, total=None, desc=None, leave=True):
    """A tqdm bar on stderr, disabled (a no-op object) unless :func:`show_progress`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=leave, disable=not show_progress(args),
                dynamic_ncols=True, mininterval=1.0, file=sys.stderr)


def tqdm_factory(args):
    """``make(total, desc, leave)`` -> a tqdm bar (for :meth:`Trainer.fit`), or ``None`` when
    bars are off (:func:`show_progress`)."""
    if not show_progress(args):
        return None

    def make(total=None, desc=None, leave=False):
        return progress_bar(args, total=total, desc=desc, leave=leave)

    return make


# ----------------------------------------------------------------------------------- data
def _data_advice(e, layout: str) -> str:
    """A :class:`DataNotFoundError` worded in flags instead of the library's arguments."""
    advice = {"root": f"give --root DIR or set $PYG_SPHERICAL_DATA, with {layout}",
              "download": "or run without --no-download to download them"}
    return "; ".join([e.problem, *(advice[k] for k in e.needs)])


def load_planetoid(args, dataset: str):
    """Load a Planetoid graph and print one line naming where its raw files came from; one
    ``error:`` line (exit 2) if they are missing or damaged."""
    from pyg_spherical.repro.datasets import DataNotFoundError, load_planetoid, planetoid_source

    download = not args.no_download
    try:
        source = planetoid_source(dataset, args.root, download=download)
        with warnings.catch_warnings(record=True) as caught:  # a rebuilt cache: one line
            warnings.simplefilter("always")
            data = load_planetoid(dataset, args.root, download=download)
        for w in caught:
            sys.stderr.write(f"note: {w.message}\n")
    except DataNotFoundError as e:
        fail(_data_advice(e, f"DIR/{dataset}/raw/ind.{dataset.lower()}.*"))
    except (OSError, ValueError) as e:  # a corrupt raw file (named in the message)
        fail(str(e))
    print(f"data: {dataset} from {source.describe()}")
    return data


def load_mnist(args, device=None):
    """``pyg_spherical.repro.datasets.load_mnist`` with the CLI's ``--root`` / ``--no-download``; one
    ``error:`` line (exit 2) if the files are missing or damaged."""
    from pyg_spherical.repro.datasets import DataNotFoundError, load_mnist

    try:
        return load_mnist(root=args.root, download=not args.no_download)
    except DataNotFoundError as e:
        fail(_data_advice(e, "the MNIST idx files under DIR/MNIST/raw"))
    except (OSError, ValueError) as e:
        fail(str(e))


# ---------------------------------------------------------------------------- checkpoints
def load_checkpoint(path, map_location=None, keys=("model",)) -> dict:
    """``torch.load`` of a checkpoint this repository wrote; one ``error:`` line naming the file
    (exit 2) if it is missing, corrupt or truncated, or lacks one of ``keys``."""
    path = Path(path)
    if not path.is_file():
        fail(f"{shown(path)}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, AttributeError,
            ImportError, IndexError, KeyError, TypeError) as e:  # what unpickling garbage raises
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        fail(f"{shown(path)}: not a readable checkpoint (corrupt or truncated: {reason}); "
             "delete it to start the run afresh")
    missing = [k for k in keys if not (isinstance(state, dict) and k in state)]
    if missing:
        fail(f"{shown(path)}: not a checkpoint of this benchmark (no {missing[0]!r} entry)")
    return state


def load_weights(model, state: dict, path) -> None:
    """``model.load_state_dict(state["model"])``; one ``error:`` line if they do not fit."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        fail(f"{shown(path)}: the checkpoint does not fit the model ({reason})")


#: how a resumable checkpoint (``Trainer.state_dict``) stores the settings a run started with
CHECKPOINT_SETTINGS = {
    "lr": lambda s: s["optimizer"]["param_groups"][0]["lr"],
    "patience": lambda s: s["early_stopping"]["patience"],
    "warmup": lambda s: s["early_stopping"]["min_epochs"],
}


def add_resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--use-checkpoint-settings", action="store_true",
                   help="when resuming a run whose checkpoint was started with other "
                        "settings (--lr, --patience and, where the benchmark has it, --warmup), "
                        "continue with the checkpoint's values (without it such a mismatch is "
                        "an error)")


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def resume(trainer, args, settings=("lr", "patience"), map_location=None, name="") -> bool:
    """Resume ``trainer`` from its ``last.pt`` (and ``best.pt``), if there is one.

    The checkpoint's ``settings`` (flag names, see :data:`CHECKPOINT_SETTINGS`) must equal the
    flags: a mismatch is one ``error:`` line naming the flag and both values, unless
    ``--use-checkpoint-settings``, which takes the checkpoint's values (into ``args`` too) and
    says so. Unreadable checkpoints are one ``error:`` line naming the file."""
    path = trainer.last_path
    if path is None or not path.is_file():
        return False
    state = load_checkpoint(path, map_location,
                            keys=("model", "optimizer", "epoch", "early_stopping", "history"))
    try:
        saved = {k: CHECKPOINT_SETTINGS[k](state) for k in settings}
    except (KeyError, IndexError, TypeError):
        fail(f"{shown(path)}: not a resumable checkpoint of this benchmark")
    diff = {k: v for k, v in saved.items() if not _same(getattr(args, k), v)}
    if diff and not getattr(args, "use_checkpoint_settings", False):
        fail("; ".join(f"--{k.replace('_', '-')} {getattr(args, k)} differs from {v} in the "
                       f"checkpoint {shown(path)}" for k, v in diff.items())
             + ": pass the checkpoint's value(s) to continue that run, "
               "--use-checkpoint-settings to continue with them, or another --checkpoint-dir")
    for k, v in diff.items():
        print(f"{name}continuing with the checkpoint's --{k.replace('_', '-')} {v} "
              f"(not {getattr(args, k)})", flush=True)
        setattr(args, k, v)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        fail(f"{shown(path)}: the checkpoint does not fit this run ({reason})")
    best = trainer.best_path
    if best is not None and best.is_file():
        trainer.best_state = load_checkpoint(best, map_location)["model"]
    return True


# ---------------------------------------------------------------------------------------------
# Link prediction (Table 4): models, data sets and run settings of the link-prediction CLIs
# ---------------------------------------------------------------------------------------------
MODELS = {"svgae": "S-VGAE", "vgae": "N-VGAE"}  # the paper's pair ("--model both")
#: every model the link-prediction benchmarks train: the latent family of each, and its name
LATENT_OF = {"svgae": "vmf", "vgae": "normal", "pvgae": "power"}
NAMES = {**MODELS, "pvgae": "P-VGAE"}
DATASETS = ("Cora", "CiteSeer", "PubMed")


def dataset_name(value: str) -> str:
    """``argparse`` type: a data set of :data:`DATASETS`, any capitalisation."""
    for name in DATASETS:
        if value.lower() == name.lower():
            return name
    raise argparse.ArgumentTypeError(
        f"unknown dataset {value!r}; choose one of {', '.join(DATASETS)}")


def probability(value):
    """``argparse`` type: a dropout probability in ``[0, 1)``."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a float, got {value!r}")
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"dropout must be in [0, 1), got {value}")
    return v


def mean_se(values):
    """Mean and standard error (``None`` for a single value)."""
    values = [float(v) for v in values]
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return m, se


def settings(args, dataset: str, model: str) -> dict:
    """The run configuration: flags > selected (or, with ``--paper-settings``, Table 7)."""
    table = PAPER_TABLE7 if getattr(args, "paper_settings", False) else SELECTED_SETTINGS
    # the P-VGAE (Power Spherical latent) runs at the S-VGAE's settings
    # (lr, dropout, dim) or (lr, dropout, dim, epochs); the protocol's 200 (PubMed 400) epochs
    # unless the entry says otherwise
    lr, dropout, dim, *epochs = table[dataset]["svgae" if model == "pvgae" else model]
    epochs = epochs[0] if epochs else (400 if dataset == "PubMed" else 200)
    cfg = {
        "lr": args.lr if args.lr is not None else lr,
        "dropout": args.dropout if args.dropout is not None else dropout,
        "dim": args.dim if args.dim is not None else dim,
        "hidden": args.hidden,
        "epochs": args.epochs if args.epochs is not None else epochs,
    }
    if LATENT_OF[model] != "normal":
        cfg["decoder"] = getattr(args, "decoder", "scaled")
        if cfg["decoder"] == "scaled":
            scale = getattr(args, "scale_init", None)
            cfg["scale_init"] = SEARCH_SCALE_INIT if scale is None else scale
    return cfg


def summarize(runs: list[dict]) -> dict:
    """Mean and standard error of the runs' test / validation scores (%), median epoch time."""
    s = {}
    for key in ("test_auc", "test_ap", "val_auc"):
        m, se = mean_se([r[key] for r in runs])
        s[key] = {"mean": 100 * m, "se": None if se is None else 100 * se}
    s["runs"] = len(runs)
    s["epoch_ms"] = statistics.median(r["epoch_ms_median"] for r in runs)
    s["best_epoch_mean"] = statistics.fmean(r["epoch"] for r in runs)
    return s


# ---------------------------------------------------------------------------------------------
# MNIST VAEs (Tables 1 and 2): the latent families mnist_vae.py trains and mnist_knn.py reads
# ---------------------------------------------------------------------------------------------
VAE_LATENTS = ("normal", "vmf", "power")
VAE_SPHERICAL = ("vmf", "power")
VAE_NAMES = {"normal": "N-VAE", "vmf": "S-VAE", "power": "P-VAE"}


# ---------------------------------------------------------------------------------------------
# Semi-supervised MNIST (Table 3): the M1+M2 training protocol, its flags and diagnostics
# ---------------------------------------------------------------------------------------------
def z2_options_of(args, combo):
    """z2's latent-layer options from ``--z2-factors`` (a product of spheres for a vMF z2)."""
    k = getattr(args, "z2_factors", 1)
    return {"factors": k} if k > 1 and combo.endswith("S") else None


def load_mnist_splits(args, device) -> dict:
    """MNIST for the semi-supervised runs: the 50k training images (``--train-subset``), the
    validation and test images binarised once with ``--eval-seed`` (``--eval-subset``) on
    ``device``, and the grey test images (figures)."""
    from pyg_spherical.repro.datasets import binarize_fixed

    data = load_mnist(args)
    train, val, test = data["train"], data["val"], data["test"]
    if args.train_subset:
        train = train._replace(x=train.x[: args.train_subset], y=train.y[: args.train_subset],
                               index=train.index[: args.train_subset])
    val_x, val_y = binarize_fixed(val.x, seed=args.eval_seed), val.y
    test_x, test_y = binarize_fixed(test.x, seed=args.eval_seed + 1), test.y
    if args.eval_subset:
        val_x, val_y = val_x[: args.eval_subset], val_y[: args.eval_subset]
        test_x, test_y = test_x[: args.eval_subset], test_y[: args.eval_subset]
    return {"train": train, "val_x": val_x.to(device), "val_y": val_y.to(device),
            "test_x": test_x.to(device), "test_y": test_y.to(device), "test_grey": test.x}


def labelled_weight(args, n_l, n_u) -> float:
    """``w_l``: 1 for ``equal``, ``N_l / N_u`` for ``kingma``, else the number given."""
    if args.labelled_weight == "equal":
        return 1.0
    if args.labelled_weight == "kingma":
        return n_l / n_u
    return float(args.labelled_weight)


def labelled_split(train, n_labels, seed):
    """Class-balanced labelled indices and the complementary unlabelled ones (numpy int64)."""
    from pyg_spherical.repro.evaluation import balanced_label_draw

    try:
        lab = balanced_label_draw(train.y.cpu(), n_labels, seed=seed, num_classes=10)
    except ValueError as e:
        fail(str(e))
    mask = np.ones(train.y.shape[0], dtype=bool)
    mask[lab] = False
    return lab, np.flatnonzero(mask)


def init_concentration_(model, scaled: bool) -> None:
    """Start every vMF concentration head of ``model`` at ``kappa = m`` (the sphere's ambient
    dimension) instead of ``softplus(0) + 1 = 1.7``: the bias is set so that
    ``softplus(bias) + min_concentration = m`` (an ablation; at ``m = 10`` the sampled directions
    then start about 1 radian from the mean instead of near-uniformly spread)."""
    if not scaled:
        return
    heads = [(model.latent1, model.z1_scale), (model.latent2, model.z2_scale),
             (model.latent_pz1, model.pz1_scale)]
    for latent, head in heads:
        if latent.kind != "vmf":
            continue
        per_factor = latent.dim // getattr(latent, "factors", 1)
        target = torch.tensor(float(per_factor) - latent.min_concentration).clamp_min(1e-3)
        with torch.no_grad():
            head.bias.fill_(float(target.expm1().log()))  # softplus^{-1}


def build_m1m2(args, combo, d1, d2, seed, device, *, checkpoint_dir, z2_options=None,
               kl_warmup_epochs=0, max_epochs=None, scaled_init=False, val_elbo=False,
               model_cls=None):
    """Model, trainer and loader of one M1+M2 run (``args``: the protocol flags of
    :func:`add_protocol_args`). ``z2_options`` (z2's latent layer), a linear KL warm-up of z2
    over ``kl_warmup_epochs``, ``scaled_init`` (:func:`init_concentration_`), ``model_cls`` (a
    subclass of :class:`~pyg_spherical.m1m2.M1M2`) and ``val_elbo`` (also record the unlabelled
    bound ``-U`` of the validation images each epoch) are for the ablations;
    ``checkpoint_dir=None`` keeps the best weights in memory only."""
    from pyg_spherical.m1m2 import COMBINATIONS, M1M2
    from pyg_spherical.repro.training import (
        EarlyStopping,
        SemiSupervisedLoader,
        Trainer,
        linear_warmup,
    )

    torch.manual_seed(seed)
    z1_latent, z2_latent = COMBINATIONS[combo]
    model = (model_cls or M1M2)(z1_latent, d1, z2_latent, d2, hidden=args.hidden,
                                z2_options=z2_options or z2_options_of(args, combo)).to(device)
    init_concentration_(model, scaled_init)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    alpha = args.alpha
    train = args._data["train"]
    lab, unl = labelled_split(train, args.labels, seed)
    w_l = labelled_weight(args, len(lab), len(unl))

    def train_step(batch, epoch):
        xl, yl, xu = batch
        loss, m = model.loss(xl, yl, xu, alpha=alpha, labelled_weight=w_l,
                             kl_z2_weight=linear_warmup(epoch, kl_warmup_epochs))
        return {"loss": loss, **m}

    d = args._data
    val_x, val_y, test_x, test_y = d["val_x"], d["val_y"], d["test_x"], d["test_y"]

    def evaluate(m, epoch):
        out = {"acc": float(m.accuracy(val_x, val_y)), "test_acc": float(m.accuracy(test_x, test_y))}
        if val_elbo:  # one draw per image: the bound -U(x) of the unlabelled objective
            out["elbo_u"] = float(torch.cat([m.unlabelled_bound(xb).elbo
                                             for xb in val_x.split(2000)]).mean())
        return out

    stopper = EarlyStopping(patience=args.patience, mode="max")
    trainer = Trainer(model, opt, train_step, evaluate, monitor="acc", early_stopping=stopper,
                      max_epochs=max_epochs or args.max_epochs, checkpoint_dir=checkpoint_dir)
    lab_t, unl_t = torch.as_tensor(lab), torch.as_tensor(unl)
    loader = SemiSupervisedLoader(train.x.index_select(0, lab_t).to(device),
                                  train.y.index_select(0, lab_t).to(device),
                                  train.x.index_select(0, unl_t).to(device),
                                  batch_size=args.batch_size, seed=seed)
    return model, trainer, loader, lab


def _spread(dist, layer):
    """Median concentration (a spherical ``layer``: vMF, Power Spherical; over the factors of a
    product) or median standard deviation (Gaussian, over all dims)."""
    return float(dist.concentration.median() if layer.spherical else dist.base_dist.scale.median())


@torch.no_grad()
def model_diagnostics(model, x, y, x_train=None, y_train=None) -> dict:
    """How a trained model classifies the images ``x`` (labels ``y``): accuracy of ``q(y|z1)``
    and of M2's generative classifier (10 draws of z2), their agreement, the KL of
    ``q(z2|z1,y)`` to its prior at the predicted class, the spreads of ``q(z1|x)``,
    ``p(z1|y,z2)`` and ``q(z2|z1,y)``, the bound ``-U``, for a Gaussian z2 its active units and
    mean KL per coordinate, and (given training images) a 5-NN on the z1 codes with 100 labels
    (M1 alone)."""
    from torch.distributions import kl_divergence

    from pyg_spherical.repro.evaluation import metric_for_latent, semi_supervised_knn

    k1, k2 = model.latent1.kind, model.latent2.kind
    pred = torch.cat([model.class_logits(xb).argmax(-1) for xb in x.split(5000)])
    gen = torch.cat([model.class_bounds(xb, num_samples=10).argmax(-1) for xb in x.split(2000)])
    z1 = torch.cat([model.embed(xb) for xb in x.split(5000)])
    q1 = model.q_z1(x)
    yh = model.one_hot(pred)
    q2 = model.q_z2(z1, yh)
    kl2 = kl_divergence(q2, model.p_z2())
    pz1 = model.p_z1(model.latent2.point(q2), yh)
    bound = torch.cat([model.unlabelled_bound(xb).elbo for xb in x.split(2000)])
    r = {"acc_q": 100 * float((pred == y).double().mean()),
         "acc_generative": 100 * float((gen == y).double().mean()),
         "agreement": 100 * float((gen == pred).double().mean()),
         "kl_z2_median": float(kl2.median()), "kl_z2_mean": float(kl2.mean()),
         "q_z1_spread": _spread(q1, model.latent1), "p_z1_spread": _spread(pz1, model.latent_pz1),
         "q_z2_spread": _spread(q2, model.latent2), "test_bound_U": float(bound.double().mean())}
    if k2 == "normal":  # which coordinates of a Gaussian z2 carry information, and how much
        mu, sd = q2.base_dist.loc, q2.base_dist.scale
        kl_dim = 0.5 * (sd * sd + mu * mu - 1) - sd.log()
        # active units (Burda et al., 2016): Var_x E[z2_u] > 0.01
        r["z2_active_units"] = int((mu.var(0) > 0.01).sum())
        r["z2_kl_per_dim"] = [round(v, 3) for v in kl_dim.mean(0).tolist()]
    if x_train is not None:
        z_train = torch.cat([model.embed(xb) for xb in x_train.split(5000)])
        knn = semi_supervised_knn(z_train.cpu(), y_train, z1.cpu(), y.cpu(), 100,
                                  metric=metric_for_latent(k1), draws=5, seed=0)
        r["knn_z1_100"] = 100 * float(knn.mean())
    return r


def add_protocol_args(p) -> None:
    """The training-protocol flags of the M1+M2 benchmarks."""
    p.add_argument("--labels", type=int, default=100, help="labelled images (class-balanced)")
    p.add_argument("--alpha", type=non_negative(float), default=1.0,
                   help="classification-loss weight per labelled image (paper: in [0.1, 1])")
    p.add_argument("--labelled-weight", default="kingma",
                   help="weight w_l of the labelled bound: 'kingma' (N_l/N_u: every image weighs "
                        "the same, as Kingma et al.'s sum over the data), 'equal' (1: labelled "
                        "and unlabelled batch means weigh the same), or a number")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=positive(int), default=100,
                   help="unlabelled (and labelled) batch")
    p.add_argument("--hidden", type=positive(int), default=500, help="hidden units of every MLP")


def check_protocol_args(p, args) -> None:
    """``p.error`` (one line, exit 2) on invalid protocol flags."""
    if args.labels < 10 or args.labels % 10:
        p.error(f"--labels must be a positive multiple of 10 (class-balanced), got {args.labels}")
    if args.labelled_weight not in ("kingma", "equal"):
        try:
            if not float(args.labelled_weight) >= 0:
                raise ValueError
        except ValueError:
            p.error(f"--labelled-weight must be 'kingma', 'equal' or a number >= 0, "
                    f"got {args.labelled_weight!r}")
