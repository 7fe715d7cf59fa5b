"""Benchmark: cleaning and preprocessing throughput on a portrait folder.

    KOALA_DATA_DIR=../shared/data/portraits .venv/bin/python benchmarks/prepare.py [SIZE]

Cleans every file under KOALA_DATA_DIR, then prepares the kept ones at SIZE x SIZE
(default 224) into a temporary cache folder with one worker per CPU. Prints one JSON
object: images, seconds and images/s for each stage, the cache size on disk, and the peak
resident memory of this process and of its workers. Not a test: numbers only.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time

from koala_lib.data import cleaning, prepare
from koala_lib.environment import data_dir


def main(size: int) -> dict:
    folder = data_dir()
    if folder is None:
        sys.exit("set KOALA_DATA_DIR to a folder of portraits")
    start = time.perf_counter()
    report = cleaning.clean(folder, progress=False)
    clean_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        prepared = prepare.prepare(report.kept, size, progress=False, folder=f"{scratch}/p")
        prepare_seconds = time.perf_counter() - start
        disk = prepared.disk_bytes()
    files = sum(report.counts().values())
    return {
        "cpus": os.cpu_count(),
        "files": files,
        "clean_seconds": round(clean_seconds, 2),
        "clean_files_per_s": round(files / clean_seconds, 1),
        "skipped": {k: v for k, v in report.counts().items() if k != "kept" and v},
        "prepared_images": len(prepared),
        "size": size,
        "prepare_seconds": round(prepare_seconds, 2),
        "prepare_images_per_s": round(len(prepared) / prepare_seconds, 1),
        "cache_mb": round(disk / 2**20, 1),
        "peak_rss_mb_main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb_largest_worker": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 224), indent=2))
