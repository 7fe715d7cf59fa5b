"""The install path of every notebook's first cell, in an environment like Colab's.

A venv gets the versions Colab ships (``colab_versions.txt``); then, as on Colab,
``pip install "koala @ git+<repository>"`` from a bare clone of HEAD. Nothing Colab ships
may change (koala's requirements are lower bounds for that reason), and notebook 01 must
then run in that venv. The first run downloads TensorFlow (pip caches it after that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import papermill as pm
import pytest
from conftest import ROOT

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
    pip = next(line for line in PINS.read_text().splitlines() if line.startswith("pip=="))
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", pip)
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", PINS)
    return folder, python


def test_installing_koala_changes_nothing_colab_ships_and_notebook_01_runs(
        colab_like_venv, portrait_folder, monkeypatch):
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
