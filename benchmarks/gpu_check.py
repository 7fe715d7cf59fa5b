"""The GPU check (``make gpu-check``): notebooks 06-08 in the ``gpu`` profile, then the
training benchmark at 224x224 (bfloat16, batch 256), on one GPU with ``KERAS_BACKEND=jax``.

    KERAS_BACKEND=jax python benchmarks/gpu_check.py [--extractor profile] [--out DIR]

Writes ``benchmarks/results/gpu-check-<gpu>-<date>.json`` (and a copy under ``--out``): the
GPU's name, the versions, each notebook's wall time and recorded numbers (as the tests
record them), and the benchmark's JSON. Executed notebooks and runs go under
``build/gpu-check/``. ``--extractor inception_resnet_v2:random`` runs the paper's extractor
untrained on machines that cannot download ImageNet's weights: the same architecture and
cost, and colour numbers that are then not the course's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("06_training_on_gpu", "07_reproduce_table1", "08_evaluate_and_colorize")
BUDGET_S = 8 * 60


def gpu_name() -> str:
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        return output.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def run_notebook(stem: str, extractor: str, build: Path, profile: str) -> dict:
    import papermill as pm

    sys.path.insert(0, str(ROOT / "tests"))
    from notebook_records import with_record

    source = with_record(ROOT / "notebooks" / f"{stem}.ipynb",
                         build / "notebooks" / f"{stem}.with_record.ipynb")
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(source), str(build / "notebooks" / f"{stem}.ipynb"),
                            parameters={"PROFILE": profile, "EXTRACTOR": extractor},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3",
                            progress_bar=False, log_output=False)
    except Exception as failure:  # keep going: the next notebooks and the JSON still count
        error = f"{type(failure).__name__}: {str(failure)[-2000:]}"
    seconds = time.perf_counter() - start
    recorded = build / "results" / f"{stem}.json"
    return {"seconds": round(seconds, 1), "error": error,
            "recorded": json.loads(recorded.read_text()) if recorded.is_file() else None}


def run_benchmark() -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / "training.py"), "--size", "224",
               "--batch", "256", "--steps", "40", "--precision", "mixed_bfloat16"]
    start = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    result = {"command": " ".join(command[1:]), "seconds": round(time.perf_counter() - start, 1)}
    try:
        result["result"] = json.loads(output.stdout[output.stdout.index("{"):])
    except ValueError:
        result["error"] = output.stderr[-3000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extractor", default="profile",
                        help='the notebooks\' EXTRACTOR ("profile", or e.g. '
                             '"inception_resnet_v2:random" offline)')
    parser.add_argument("--profile", default="gpu", help="gpu; ci tries the script on a CPU")
    parser.add_argument("--out", type=Path, default=None, help="also copy the JSON here")
    args = parser.parse_args()

    from koala_lib.environment import current, package_versions, visible_gpus

    if current().keras_backend != "jax":
        sys.exit("make gpu-check runs with KERAS_BACKEND=jax.")
    if args.profile == "gpu" and not visible_gpus():
        sys.exit("make gpu-check needs a GPU: JAX sees none.")
    build = ROOT / "build" / "gpu-check"
    shutil.rmtree(build, ignore_errors=True)  # a fresh run: no resumed training
    os.environ.update(KOALA_PROFILE=args.profile, KOALA_BUILD_DIR=str(build),
                      KOALA_FIG_DIR=str(build / "figures"))
    gpu = gpu_name()
    report = {
        "check": "make gpu-check: notebooks 06-08 (profile gpu) + benchmarks/training.py",
        "gpu": gpu, "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
        "backend": "jax", "profile": args.profile, "extractor": args.extractor,
        "versions": package_versions(("keras", "jax", "jaxlib", "numpy", "scikit-image")),
        "budget_s": BUDGET_S, "notebooks": {},
    }
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.split(",")[0].lower()).strip("-")
    results = ROOT / "benchmarks" / "results" if args.profile == "gpu" else build
    path = results / f"gpu-check-{slug}-{report['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        text = json.dumps(report, indent=2) + "\n"
        path.write_text(text)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / path.name).write_text(text)

    start = time.perf_counter()
    for stem in NOTEBOOKS:
        print(f"== {stem}", flush=True)
        report["notebooks"][stem] = run_notebook(stem, args.extractor, build, args.profile)
        print(f"   {report['notebooks'][stem]['seconds']} s, error: "
              f"{report['notebooks'][stem]['error']}", flush=True)
        save()
    print("== benchmarks/training.py", flush=True)
    report["training_benchmark"] = run_benchmark()
    report["total_s"] = round(time.perf_counter() - start, 1)
    report["within_budget"] = report["total_s"] <= BUDGET_S
    report["passed"] = report["within_budget"] and not any(
        item["error"] for item in report["notebooks"].values()) and \
        "result" in report["training_benchmark"]
    save()
    print(json.dumps({key: report[key] for key in ("gpu", "total_s", "passed")}))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
