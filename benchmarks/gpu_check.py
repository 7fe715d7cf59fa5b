"""The GPU check (``make gpu-check``): notebooks 06-10 with the ``gpu`` profile's switches, as
Colab runs them, then the training benchmark, on one GPU with ``KERAS_BACKEND=jax``; JSON.

    python benchmarks/gpu_check.py --pack        # here, beside ../shared: the data archive
    KERAS_BACKEND=jax PYTHONPATH=tests python benchmarks/gpu_check.py [--dry-run] [--out DIR]

A device call carries 64 MiB of the working tree and no ``../shared``, and the device has no
internet. So ``--pack`` writes the portraits as one archive under :data:`ARCHIVE_LIMIT`
(``build/gpu-check-data/portraits.tar``, every black-and-white portrait and the colour ones
taken in turn from each source, size printed), which the check unpacks; Inception-ResNet-v2
runs untrained (``inception_resnet_v2:random``: the same architecture and cost); LFW and
tf_flowers come from offline stand-ins (``tests/standins``) through the library's real code.
Each notebook runs on a fresh cache, as a fresh Colab runtime would, with one Drive folder
shared by all (``KOALA_DRIVE_DIR``). The JSON says all of this.

On the GPU the notebooks run in the ``gpu_check`` profile (the ``gpu`` profile's switches
at sizes one call finishes, precision ``auto``: bfloat16 there); the check passes when every
notebook runs and the whole fits :data:`BUDGET_S`. ``--dry-run`` runs the same script to the
end on a CPU, with the backend set (``make test``: TensorFlow, whose float16 the device
cannot run), in the ``ci_gpu`` profile and a tiny benchmark: ``tests/test_notebooks.py``
checks notebooks 06-10 that way.
Writes ``benchmarks/results/gpu-check-<gpu>-<date>.json`` (``--dry-run``: under
``build/gpu-check/``) and a copy under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ("06_training_on_gpu", "07_reproduce_table1", "08_evaluate_and_colorize",
             "09_beyond_the_report", "10_beyond_the_report_part2")
BUDGET_S = 8 * 60
ARCHIVE = ROOT / "build" / "gpu-check-data" / "portraits.tar"
ARCHIVE_LIMIT = 55 * 2**20  # under a device call's 64 MiB, with room for the code
STANDINS = ROOT / "tests" / "standins"
LFW_PERSONS = {f"Person_{i:02d}": 1 + i % 3 for i in range(12)}  # 24 photos of 12 persons
OFFLINE = ("Inception-ResNet-v2 untrained (no download); LFW and tf_flowers from offline "
           "stand-ins (tests/standins) read by the library's real code; the portraits from "
           "the packed archive")


def gpu_name() -> str:
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        return output.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# --- the data archive ----------------------------------------------------------------------


def pack(folder: Path, archive: Path = ARCHIVE, limit: int = ARCHIVE_LIMIT) -> dict:
    """``folder``'s portraits as one tar under ``limit`` bytes: every grayscale one, then the
    colour ones taken in turn from each source (one portrait a person here), until full."""
    from koala_lib.data.sources import read_manifest

    rows = read_manifest(folder)
    if not rows:
        raise SystemExit(f"{folder} has no manifest.csv: point KOALA_DATA_DIR at the portraits.")
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["path"].split("/")[0], []).append(row)
    gray = [row for row in rows if (row.get("mode") or "RGB").upper() != "RGB"]
    colour = [[row for row in found if (row.get("mode") or "RGB").upper() == "RGB"]
              for found in by_source.values()]
    queues = [found for found in colour if found]
    def in_tar(row) -> int:  # a header block, then the file in whole blocks
        return 512 + -(-(folder / row["path"]).stat().st_size // 512) * 512

    chosen = list(gray)
    total = 2**20 + sum(map(in_tar, gray))  # room for the manifest and the archive's end
    while any(queues):
        for queue in queues:
            if queue:
                row = queue.pop(0)
                if total + in_tar(row) <= limit:
                    chosen.append(row)
                    total += in_tar(row)
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(chosen)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
        data = manifest.getvalue().encode()
        info = tarfile.TarInfo("portraits/manifest.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for row in chosen:
            tar.add(folder / row["path"], f"portraits/{row['path']}")
    if partial.stat().st_size > limit:
        partial.unlink()
        raise RuntimeError(f"the archive came to {partial.stat().st_size:,} bytes, over "
                           f"{limit:,}: a bug in its accounting.")
    partial.replace(archive)
    counts = {source: sum(row["path"].startswith(f"{source}/") for row in chosen)
              for source in by_source}
    summary = {"archive": str(archive.relative_to(ROOT)), "bytes": archive.stat().st_size,
               "portraits": len(chosen), "by_source": counts}
    print(f"packed {len(chosen)} portraits ({counts}) into {summary['archive']}: "
          f"{summary['bytes'] / 2**20:.1f} MiB (limit {limit / 2**20:.0f} MiB)")
    return summary


def unpack(archive: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")  # refuses links and paths out of target
    return target / "portraits"


# --- the notebooks ---------------------------------------------------------------------------


def run_notebook(stem: str, build: Path, profile: str, drive: Path, portraits: Path) -> dict:
    """``stem`` on a fresh runtime: its own empty cache (LFW's download stood in for), the
    shared Drive folder, the unpacked portraits. Returns its time, error and records."""
    import papermill as pm

    # The LFW stand-in lives with the tests: tests/ is on the path (make gpu-check's
    # PYTHONPATH), and only this function needs it.
    try:
        from standins.lfw_layout import fake_lfw
    except ImportError as missing:
        raise SystemExit("gpu_check.py needs tests/ on the path for its offline stand-ins: "
                         "run `make gpu-check`, or PYTHONPATH=tests python "
                         "benchmarks/gpu_check.py") from missing

    from koala_lib.course import SETTINGS
    from koala_lib.records import with_record

    runtime = build / "runtimes" / stem
    shutil.rmtree(runtime, ignore_errors=True)
    if SETTINGS[profile].lfw:
        fake_lfw(runtime / "cache" / "lfw", LFW_PERSONS)
    os.environ.update(KOALA_CACHE_DIR=str(runtime / "cache"), KOALA_DRIVE_DIR=str(drive),
                      KOALA_DATA_DIR=str(portraits))
    source = with_record(ROOT / "notebooks" / f"{stem}.ipynb",
                         runtime / f"{stem}.with_record.ipynb")
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(source), str(build / "notebooks" / f"{stem}.ipynb"),
                            parameters={"PROFILE": profile}, cwd=str(ROOT / "notebooks"),
                            kernel_name="python3", progress_bar=False, log_output=False)
    except Exception as failure:  # keep going: the next notebooks and the JSON still count
        error = f"{type(failure).__name__}: {str(failure)[-2000:]}"
    seconds = time.perf_counter() - start
    recorded = drive / "build" / "results" / f"{stem}.json"
    return {"seconds": round(seconds, 1), "error": error,
            "recorded": json.loads(recorded.read_text()) if recorded.is_file() else None}


def run_benchmark(dry_run: bool, portraits: Path, build: Path) -> dict:
    """benchmarks/training.py: random arrays and train.train on the unpacked portraits
    (on the GPU all of them, embedded by the untrained Inception-ResNet-v2: offline)."""
    sizes = (["--size", "32", "--batch", "8", "--steps", "3", "--warmup", "1", "--skip-inline",
              "--portraits", "24", "--epochs", "1", "--extractor", "mobilenet_v2"]
             if dry_run  # the offline MobileNetV2: CI's time, not 10 s of tracing
             else ["--size", "224", "--batch", "256", "--steps", "40", "--portraits", "-1",
                   "--extractor", "inception_resnet_v2"])
    command = [sys.executable, str(ROOT / "benchmarks" / "training.py"), *sizes,
               "--precision", "mixed_bfloat16"]
    start = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, check=False, env={
        **os.environ, "KOALA_DATA_DIR": str(portraits),
        "KOALA_CACHE_DIR": str(build / "benchmark-cache")})
    result = {"command": " ".join(command[1:]), "seconds": round(time.perf_counter() - start, 1)}
    try:
        result["result"] = json.loads(output.stdout[output.stdout.index("{"):])
    except ValueError:
        result["error"] = output.stderr[-3000:]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", action="store_true",
                        help="write the data archive from KOALA_DATA_DIR, then stop")
    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU, the ci_gpu profile and a tiny benchmark: the script "
                             "to its end, as make test runs it")
    parser.add_argument("--out", type=Path, default=None, help="also copy the JSON here")
    args = parser.parse_args(argv)

    from koala_lib.environment import current, data_dir, package_versions, visible_gpus

    if args.pack:
        folder = data_dir()
        if folder is None:
            sys.exit("--pack reads KOALA_DATA_DIR (e.g. ../shared/data/portraits): it is unset.")
        pack(folder)
        return 0
    backend = current().keras_backend
    if backend != "jax" and not args.dry_run:  # the device has JAX, no TensorFlow
        sys.exit("make gpu-check runs with KERAS_BACKEND=jax.")
    if not args.dry_run and not visible_gpus():
        sys.exit("make gpu-check needs a GPU: JAX sees none (--dry-run runs it on a CPU).")
    if not ARCHIVE.is_file():
        sys.exit(f"no {ARCHIVE.relative_to(ROOT)}: run `make gpu-check-pack` beside the "
                 "portraits first, and carry that folder to the GPU machine.")
    profile = "ci_gpu" if args.dry_run else "gpu_check"
    build = ROOT / "build" / "gpu-check"
    shutil.rmtree(build, ignore_errors=True)  # a fresh run: no resumed training
    (build / "notebooks").mkdir(parents=True)
    portraits = unpack(ARCHIVE, build / "data")
    drive = build / "drive"
    os.environ.update(KOALA_PROFILE=profile, PYTHONPATH=os.pathsep.join(
        [str(STANDINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    for name in ("KOALA_BUILD_DIR", "KOALA_FIG_DIR"):  # under the Drive folder
        os.environ.pop(name, None)
    gpu = gpu_name()
    report = {
        "check": "make gpu-check: notebooks 06-10 (the gpu profile's switches) + "
                 "benchmarks/training.py",
        "gpu": gpu, "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
        "backend": backend, "profile": profile, "dry_run": args.dry_run, "offline": OFFLINE,
        "archive_bytes": ARCHIVE.stat().st_size,
        "versions": package_versions(("keras", backend if backend != "jax" else "jaxlib",
                                      "numpy", "scikit-image")),
        "budget_s": BUDGET_S, "notebooks": {},
    }
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.split(",")[0].lower()).strip("-")
    results = build if args.dry_run else ROOT / "benchmarks" / "results"
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
        report["notebooks"][stem] = run_notebook(stem, build, profile, drive, portraits)
        print(f"   {report['notebooks'][stem]['seconds']} s, error: "
              f"{report['notebooks'][stem]['error']}", flush=True)
        save()
    print("== benchmarks/training.py", flush=True)
    report["training_benchmark"] = run_benchmark(args.dry_run, portraits, build)
    report["total_s"] = round(time.perf_counter() - start, 1)
    report["within_budget"] = report["total_s"] <= BUDGET_S
    report["passed"] = (report["within_budget"] or args.dry_run) and not any(
        item["error"] for item in report["notebooks"].values()) and \
        "result" in report["training_benchmark"]
    save()
    print(json.dumps({key: report[key] for key in ("gpu", "total_s", "passed")}))
    print(f"written: {path.relative_to(ROOT)}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
