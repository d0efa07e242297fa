#!/usr/bin/env bash
# The GPU check: the test suite on the GPU and the GPU benchmarks, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh OUTDIR DATAROOT
#
# Needs a CUDA build of torch, torch_geometric and the test tools (pytest, mpmath) already
# installed; no network. Installs nothing: the package is imported from this checkout
# (INSTALL=1: `pip install --no-deps --no-build-isolation -e .` first). Cora is the packaged copy;
# MNIST is read from DATAROOT/MNIST/raw. Writes into OUTDIR (created; at most 8 files):
#   gpu_check.log           everything the steps print
#   summary.json            per step its exit status and seconds, the device, the headline figures
#   sampler.json            rsample + backward timings, vMF / Power / Gaussian
#   sampler_syncs.json      host-device syncs per training step
#   linkpred_cora.json      one Cora run of S-VGAE and N-VGAE, and the equal-d epoch times
#   mnist_speed.json        MNIST VAE training steps, 5 epochs' worth per latent, interleaved
#   mnist_vae_vmf_d5_s0.json  a 5-epoch S-VAE run end to end (checkpoints in a temporary folder)
# Every step runs under its own time limit; a failed step does not stop the others; the exit
# status is 1 if any step failed.
#
# DEVICE=cpu QUICK=1 runs the same steps on the CPU, shortened (a check of this script).
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "error: usage: bash benchmarks/gpu_check.sh OUTDIR DATAROOT" >&2
    exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)" || { echo "error: cannot create $1" >&2; exit 2; }
DATA="$(cd "$2" 2>/dev/null && pwd)" || { echo "error: no data root $2" >&2; exit 2; }
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
PY="${PYTHON:-python}"
LOG="$OUT/gpu_check.log"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYG_SPHERICAL_DATA="$DATA" PYG_SPHERICAL_CACHE="$SCRATCH/cache"
export PYTHONDONTWRITEBYTECODE=1
: > "$LOG"

if [ "${INSTALL:-0}" = 1 ]; then
    "$PY" -m pip install --no-deps --no-build-isolation -e . >> "$LOG" 2>&1 ||
        { echo "error: pip install -e . failed (see $LOG)" >&2; exit 2; }
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "error: $PY cannot import torch (activate the environment, or set PYTHON=...)" >&2
    exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)"; then
    echo "error: DEVICE=$DEVICE but this torch sees no CUDA device" >&2
    exit 2
fi

if [ "$QUICK" = 1 ]; then
    TESTS=(tests/test_host_syncs.py -k counter)
    SAMPLER=(--batch 2000 --repeats 1 --dims 3 10 --kappas 1 100)
    SYNCS=(--sync-steps 1)
    LINKPRED=(--epochs 2)
    MNIST_SPEED=(--speed-steps 3 --speed-reps 1)
    MNIST_RUN=(--max-new-epochs 1 --train-subset 256 --eval-subset 128 --ll-samples 4)
else
    TESTS=()
    SAMPLER=()
    SYNCS=()
    LINKPRED=(--speed)
    MNIST_SPEED=(--speed-steps 782 --speed-reps 5)  # 782 steps of 64: one epoch
    MNIST_RUN=(--max-new-epochs 5)
fi

STEPS=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, record the outcome
    local name="$1" limit=$(($2 * (QUICK == 1 ? 3 : 1)))  # the CPU is slower than the GPU
    shift 2
    echo "== $name: $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
    STEPS+=("$name $rc $((SECONDS - t0)) $limit")
}

step tests 170 env PYG_SPHERICAL_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -rs \
    -p no:cacheprovider ${TESTS[@]+"${TESTS[@]}"}
step sampler 45 "$PY" benchmarks/sampler.py --device "$DEVICE" --no-progress --out-dir "$OUT" \
    ${SAMPLER[@]+"${SAMPLER[@]}"}
step syncs 45 "$PY" benchmarks/sampler.py --syncs --device "$DEVICE" --no-progress \
    --out-dir "$OUT" ${SYNCS[@]+"${SYNCS[@]}"}
step linkpred 75 "$PY" benchmarks/linkpred.py --dataset Cora --model both --runs 1 \
    --device "$DEVICE" --no-progress --out-dir "$OUT" --out linkpred_cora ${LINKPRED[@]+"${LINKPRED[@]}"}
step mnist_speed 60 "$PY" benchmarks/mnist_vae.py --speed --latents normal vmf power --dim 5 \
    --root "$DATA" --no-download --device "$DEVICE" --no-progress --out-dir "$OUT" \
    ${MNIST_SPEED[@]+"${MNIST_SPEED[@]}"}
step mnist_run 60 "$PY" benchmarks/mnist_vae.py --latent vmf --dim 5 --root "$DATA" \
    --no-download --device "$DEVICE" --no-progress --out-dir "$OUT" \
    --checkpoint-dir "$SCRATCH/checkpoints" ${MNIST_RUN[@]+"${MNIST_RUN[@]}"}

"$PY" - "$OUT" "$DEVICE" "${STEPS[@]}" <<'EOF' 2>> "$LOG"
"""summary.json: each step's outcome, the device and versions, and the headline figures."""
import json
import sys
from pathlib import Path

import torch

out, device, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]


def read(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


def tests_line():
    lines = [ln for ln in (out / "gpu_check.log").read_text().splitlines()
             if (" passed" in ln or " failed" in ln) and " in " in ln]
    return lines[0].strip("= ") if lines else None


summary = {
    "device": device,
    "gpu": torch.cuda.get_device_name(0) if device != "cpu" else None,
    "versions": {"torch": torch.__version__, "cuda": torch.version.cuda},
    "steps": {s.split()[0]: {"exit": int(s.split()[1]), "seconds": int(s.split()[2]),
                             "limit_s": int(s.split()[3])} for s in steps},
    "tests": tests_line(),
}
sampler = read("sampler.json")
if sampler:
    summary["vmf_over_gauss_m10"] = {str(r["kappa"]): round(r["vmf_over_gauss"], 2)
                                     for r in sampler["rows"] if r["m"] == 10}
syncs = read("sampler_syncs.json")
if syncs:
    summary["syncs_max_per_step"] = {f"{r['step']} / {r['latent']}": r["max"]
                                     for r in syncs["rows"]}
linkpred = read("linkpred_cora.json")
if linkpred and linkpred.get("speed_equal_dims"):
    summary["svgae_over_vgae_equal_d"] = {str(r["dim"]): round(r["ratio"], 2)
                                          for r in linkpred["speed_equal_dims"]}
mnist = read("mnist_speed.json")
if mnist:
    summary["mnist_step_over_normal"] = {
        d: {k[len("ratio_"):-len("_over_normal")]: round(v, 2) for k, v in r.items()
            if k.startswith("ratio_")} for d, r in mnist["speed"].items()}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF

failed=0
for s in "${STEPS[@]}"; do
    set -- $s
    [ "$2" = 0 ] || failed=1
done
echo "wrote $(ls "$OUT" | wc -l) files to $OUT"
exit $failed
