"""Device time of real `hamtune train --backend jax` trials on a GPU, about 8 minutes in all.

    python benchmarks/gpu_trial.py --data DIR [--out DIR] [--epochs 4] [--runs NAME ...]

Why: docs/cluster.md sizes a sweep from the GPU-hours of a trial. benchmarks/gpu_epoch.py timed
the model's arithmetic; this times the trial itself (`hamtune train`: cache, pipeline, both
phases, validation every epoch) on the dev set at 224 px, in mixed precision. Each run is one
`python -m hamtune train` process in transfer mode, as the workstation sweep trains: 2 head-only
epochs, then 2 with the top blocks unfrozen (9 of ConvNeXt-Small, 16 of DenseNet121, the top of
that sweep's range). Its weights are a random-init file of the backbone, made here under JAX
(the box cannot download ImageNet's): the same arithmetic. The first epoch of each phase
carries the XLA compile; the second is steady. Runs (`--runs`, default all but bf16):

- convnext_small-b32, densenet121-b32: batch 32, float16 (loss-scaled);
- convnext_small-b128: batch 128, against batch 32;
- densenet121-b32-shared: two batch-32 trials at once on the one GPU, against one alone;
- convnext_small-b32-bf16: bfloat16, against float16.

Prints a table per run and writes every log and `summary.json` under `--out`. Needs only the
packages `hamtune train --backend jax` imports: no TensorFlow, Ray or Optuna.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Top of the workstation sweep's unfreeze-depth range per backbone (as gpu_epoch.py uses).
DEPTH = {"convnext_small": 9, "densenet121": 16}
EPOCH_LINE = re.compile(r"epoch +(\d+) \(phase (\d)\).*\(([0-9.]+)s training\)")
PER_RUN_LIMIT_S = 240


@dataclass(frozen=True)
class Run:
    name: str
    model: str
    batch: int
    processes: int = 1
    precision: str = "float16"


RUNS = {run.name: run for run in (
    Run("convnext_small-b32", "convnext_small", 32),
    Run("densenet121-b32", "densenet121", 32),
    Run("convnext_small-b128", "convnext_small", 128),
    Run("densenet121-b32-shared", "densenet121", 32, processes=2),
    Run("convnext_small-b32-bf16", "convnext_small", 32, precision="bfloat16"),
)}
DEFAULT_RUNS = [name for name in RUNS if not name.endswith("bf16")]


def make_weights(out: Path) -> dict[str, Path]:
    """A random-init weights file of each backbone without its top, written by Keras on JAX."""
    files = {model: out / f"{model}_random_notop.weights.h5" for model in DEPTH}
    code = (
        "import sys, keras\n"
        "from hamtune.backbones import get_backbone\n"
        "for model, path in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    keras.utils.set_random_seed(0)\n"
        "    getattr(keras.applications, get_backbone(model).application)(include_top=False, weights=None,"
        " input_shape=(224, 224, 3)).save_weights(path)\n"
    )
    missing = [str(part) for model, path in files.items() if not path.exists() for part in (model, path)]
    if missing:
        subprocess.run([sys.executable, "-c", code, *missing], check=True, cwd=REPO,
                       env={**os.environ, "KERAS_BACKEND": "jax"})
    return files


def train_images(data: Path) -> int:
    """The training split's size, as `hamtune train` splits the data by default."""
    split = Path("/tmp/hamtune-gpu-trial-split.csv")  # noqa: S108 - scratch file, this machine only
    subprocess.run([sys.executable, "-m", "hamtune", "data", "split", str(data), "--out", str(split)],
                   check=True, cwd=REPO, capture_output=True)
    return sum(1 for line in split.read_text().splitlines()[1:] if line.rstrip().endswith(",train"))


def train_command(run: Run, data: Path, weights: Path, cache: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "hamtune", "train", "--backend", "jax", "--data", str(data),
            "--model", run.model, "--image-size", "224", "--batch-size", str(run.batch),
            "--epochs", str(epochs), "--warmup-epochs", str(epochs // 2), "--unfreeze-depth", str(DEPTH[run.model]),
            "--weights", str(weights), "--mixed-precision", run.precision, "--patience", str(epochs),
            "--cache-dir", str(cache), "--cpus", str(max(1, (os.cpu_count() or 2) // run.processes))]


def run_once(run: Run, command: list[str], out: Path) -> list[dict]:
    """Start `run.processes` trials together; per process and epoch: phase, train seconds, wall seconds."""
    started = time.perf_counter()
    logs = [(out / f"{run.name}-{i}.log").open("w") for i in range(run.processes)]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True) for log in logs]
    for proc in procs:
        try:
            proc.wait(timeout=PER_RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    for log in logs:
        log.close()
    wall = time.perf_counter() - started
    results = []
    for i, proc in enumerate(procs):
        text = (out / f"{run.name}-{i}.log").read_text()
        cumulative = [(int(e), int(p), float(s)) for e, p, s in EPOCH_LINE.findall(text)]
        epochs = [{"epoch": e, "phase": p, "train_s": s - (cumulative[k - 1][2] if k else 0.0)}
                  for k, (e, p, s) in enumerate(cumulative)]
        results.append({"returncode": proc.returncode, "wall_s": wall, "epochs": epochs})
    return results


def summarise(run: Run, results: list[dict], images: int) -> dict:
    """Images/s and device-minutes per epoch of the steady epochs, and what the compile epochs added."""
    rows = {}
    for phase in (1, 2):
        per_process = [[e["train_s"] for e in r["epochs"] if e["phase"] == phase] for r in results]
        if not all(len(times) >= 2 for times in per_process):
            continue
        compile_s = max(times[0] for times in per_process)
        steady_s = max(times[-1] for times in per_process)
        rows[f"phase{phase}"] = {
            "first_epoch_s": compile_s, "steady_epoch_s": steady_s, "compile_s": compile_s - steady_s,
            "images_per_s": run.processes * images / steady_s,
            "device_minutes_per_epoch": steady_s / 60 / run.processes,
        }
    return {"run": asdict(run), "train_images": images, "processes": results, "phases": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the dev set (ham10000-dev), Kaggle layout")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu-trial")
    parser.add_argument("--epochs", type=int, default=4, help="per run, half of them head-only (default 4)")
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, choices=list(RUNS))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/hamtune-gpu-trial"),
                        help="image cache (~750 MB at 224 px) and weights files, outside --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)

    device = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].device_kind, jax.__version__)"],
                            capture_output=True, text=True, cwd=REPO).stdout.strip()
    weights, images = make_weights(cache), train_images(args.data)
    print(f"device {device}; {images} training images at 224 px; {args.epochs} epochs per trial", flush=True)
    summary = {"device": device, "runs": []}
    for name in args.runs:
        run = RUNS[name]
        command = train_command(run, args.data, weights[run.model], cache, args.epochs)
        result = summarise(run, run_once(run, command, args.out), images)
        summary["runs"].append(result)
        print(f"\n{name}: exit {[p['returncode'] for p in result['processes']]}, "
              f"wall {result['processes'][0]['wall_s']:.0f} s", flush=True)
        for phase, row in result["phases"].items():
            print(f"  {phase}: first epoch {row['first_epoch_s']:.1f} s (compile ~{row['compile_s']:.1f} s), "
                  f"steady {row['steady_epoch_s']:.2f} s = {row['images_per_s']:,.0f} images/s, "
                  f"{row['device_minutes_per_epoch']:.3f} device-minutes per epoch and trial", flush=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
