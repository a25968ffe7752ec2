#!/usr/bin/env bash
# Issue 16's GPU measurement in two steps (benchmarks/README.md, "A real trial on a GPU"):
#   benchmarks/gpu_trial.sh prepare   # here: the dev set and the missing wheels into .gpu/ (ignored)
#   benchmarks/gpu_trial.sh run       # on the GPU box: install the wheels offline, then time the trials
# The GPU box has JAX, pandas, pyarrow and scikit-learn but no Keras, TensorFlow, Ray or Optuna,
# and reaches nothing outside: `hamtune train --backend jax` needs only the wheels fetched here.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(keras==3.15.1 absl-py namex h5py optree rich pygments markdown-it-py mdurl packaging filelock pyyaml pillow)

case "${1:-}" in
  prepare)
    grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
    mkdir -p .gpu/wheels
    cp -r "${HAMTUNE_SHARED_DATA:-../shared/data}/ham10000-dev" .gpu/
    # --no-deps: the box has numpy, ml_dtypes and the rest; all must fit in 64 MiB with the tree.
    pip download --no-deps --only-binary=:all: --dest .gpu/wheels --python-version "${GPU_PYTHON:-3.12}" \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      "${WHEELS[@]}"
    du -sh .gpu ;;
  run)
    pip install --quiet --no-index --no-deps .gpu/wheels/*.whl
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    PYTHONPATH="$PWD" python benchmarks/gpu_trial.py --data .gpu/ham10000-dev --out "${OUT:-benchmarks/results/gpu-trial}" \
      "${@:2}" ;;
  *)
    echo "usage: $0 prepare | run [gpu_trial.py options]" >&2
    exit 2 ;;
esac
