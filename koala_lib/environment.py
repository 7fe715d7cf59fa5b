"""The machine the course runs on: its environment variables, folders and GPUs.

This is the one module that reads environment variables; everything else asks it.

=========================  =========================================================================
variable                   meaning
=========================  =========================================================================
``KOALA_DATA_DIR``         a local folder of portraits (here and in CI ``../shared/data/portraits``)
``KOALA_CACHE_DIR``        slow-to-make, safe-to-reuse files (weights, prepared arrays, embeddings);
                           default ``~/.cache/koala``
``KOALA_BUILD_DIR``        runs, models, executed notebooks and recorded results; default
                           ``<project>/build`` (``<drive>/build`` with ``KOALA_DRIVE_DIR``)
``KOALA_FIG_DIR``          saved figures; default ``<project>/figures`` (tests: under build/;
                           ``<drive>/figures`` with ``KOALA_DRIVE_DIR``)
``KOALA_DRIVE_DIR``        a folder that outlives the runtime but is slow to read and keeps
                           what is deleted (Google Drive on Colab): the build folder, the
                           figures and the embedding cache (small, slow to make) go there;
                           run folders, whose checkpoints come and go, move to the cache
``KOALA_PROFILE``          ``ci``, ``cpu`` or ``gpu``: overrides a notebook's ``auto`` profile
``CI``                     set by CI services: ``auto`` means ``ci`` (unless it is 0/false/no/off)
``KERAS_BACKEND``          ``tensorflow`` (default), ``jax`` or ``torch``
``KOALA_PORTRAIT_MIRROR``  an address (``http://host:port``) serving the public portraits'
                           paths: downloads come from there (the tests' local mirror)
=========================  =========================================================================

``<project>`` is the nearest folder above the working directory that holds
``pyproject.toml`` and ``koala_lib/``; on Colab (no checkout) it is the working directory.
The variables are read at each call (cheap), so a notebook or test that sets one sees it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

VARIABLES = ("KOALA_DATA_DIR", "KOALA_CACHE_DIR", "KOALA_BUILD_DIR", "KOALA_FIG_DIR",
             "KOALA_DRIVE_DIR", "KOALA_PROFILE", "CI", "KERAS_BACKEND", "KOALA_PORTRAIT_MIRROR")
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class Environment:
    """The variables above as they are set now ("" where unset)."""

    data_dir: str
    cache_dir: str
    build_dir: str
    fig_dir: str
    profile: str
    ci: bool
    keras_backend: str
    portrait_mirror: str = ""
    drive_dir: str = ""

    @property
    def batch_run(self) -> bool:
        """True in CI or a ``ci``-profile run: nobody watches, so no progress bars."""
        return self.ci or self.profile == "ci"

    def describe(self) -> str:
        """One line: every variable that is set, with its value (folders relative to the
        project, so that no local path ends up in a committed notebook)."""
        values = {name: os.environ.get(name, "") for name in VARIABLES}
        shown = [f"{name}={readable_path(value) if name.endswith('_DIR') else value}"
                 for name, value in values.items() if value]
        return "environment: " + (", ".join(shown) if shown else "no KOALA_* variables set")


def readable_path(folder) -> str:
    """``folder`` relative to the project when it is in it or beside it, else as it is."""
    folder = str(folder)
    try:
        relative = os.path.relpath(folder, project_root())
    except ValueError:  # another drive on Windows
        return folder
    return folder if relative.startswith(os.path.join(os.pardir, os.pardir)) else relative


def current() -> Environment:
    get = os.environ.get
    return Environment(
        data_dir=get("KOALA_DATA_DIR", "").strip(),
        cache_dir=get("KOALA_CACHE_DIR", "").strip(),
        build_dir=get("KOALA_BUILD_DIR", "").strip(),
        fig_dir=get("KOALA_FIG_DIR", "").strip(),
        profile=get("KOALA_PROFILE", "").strip().lower(),
        ci=get("CI", "").strip().lower() not in _FALSE,
        keras_backend=get("KERAS_BACKEND", "tensorflow").strip() or "tensorflow",
        portrait_mirror=get("KOALA_PORTRAIT_MIRROR", "").strip(),
        drive_dir=get("KOALA_DRIVE_DIR", "").strip(),
    )


# --- folders -----------------------------------------------------------------------------


def project_root(start: str | os.PathLike | None = None) -> Path:
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "koala_lib").is_dir():
            return folder
    return here


def drive_dir() -> Path | None:
    """The folder that outlives the runtime (``KOALA_DRIVE_DIR``: Google Drive on Colab)."""
    value = current().drive_dir
    return Path(value).expanduser() if value else None


def figures_dir() -> Path:
    drive = drive_dir()
    folder = Path(current().fig_dir or (drive / "figures" if drive else
                                        project_root() / "figures"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_dir(create: bool = True) -> Path:
    """Where models, results and executed notebooks go; ``create=False`` only looks (a
    command that finds no model leaves no empty ``build/`` behind)."""
    drive = drive_dir()
    folder = Path(current().build_dir or (drive / "build" if drive else
                                          project_root() / "build"))
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def runs_dir() -> Path:
    """Where run folders (checkpoints every epoch, deleted as newer ones come) go: the
    build folder's ``runs/``, or the cache's with a Drive folder (a checkpoint deleted on
    Drive sits in its Trash, counted against the quota)."""
    folder = cache_dir("runs") if drive_dir() else build_dir() / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def embeddings_dir() -> Path:
    """The embedding cache: on the Drive folder when there is one (a few MB, minutes to
    make on a fresh runtime), else in the cache."""
    drive = drive_dir()
    if drive is None:
        return cache_dir("embeddings")
    folder = drive / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_dir(*parts: str) -> Path:
    folder = Path(current().cache_dir or Path.home() / ".cache" / "koala").joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def use_course_folders(drive, local) -> dict[str, str]:
    """Keep what must survive in ``drive`` (``KOALA_DRIVE_DIR``: Google Drive on Colab) and
    do the work in ``local`` (``KOALA_CACHE_DIR``: the runtime's own disk), for this process
    and the notebooks it runs. A variable already set is left as it is. Returns what was
    set."""
    chosen = {}
    for name, folder in (("KOALA_DRIVE_DIR", Path(drive)), ("KOALA_CACHE_DIR", Path(local))):
        if not os.environ.get(name, "").strip():
            folder.mkdir(parents=True, exist_ok=True)
            os.environ[name] = chosen[name] = str(folder)
    return chosen


def data_dir() -> Path | None:
    """The folder named by ``KOALA_DATA_DIR``; None when unset. A wrong path is an error."""
    value = current().data_dir
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"KOALA_DATA_DIR={value!r} is not a folder. Point it at a folder of portraits "
            f"(e.g. ../shared/data/portraits), or unset it to use the public download."
        )
    return folder


# --- the software and the hardware ---------------------------------------------------------


def in_colab() -> bool:
    return "google.colab" in sys.modules


def package_versions(names=("keras", "numpy", "scikit-image", "matplotlib")) -> dict[str, str]:
    """Installed versions from package metadata: nothing is imported (TensorFlow is slow to)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def visible_gpus() -> int:
    """Number of GPUs the active Keras backend can use (0 when none, or on error)."""
    backend = current().keras_backend
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return len(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return sum(device.platform == "gpu" for device in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.device_count()
    except Exception as error:  # a broken driver must not stop a CPU run
        warnings.warn(f"could not query GPUs for backend {backend!r}: {error}", stacklevel=2)
    return 0


# --- processes started by koala_lib.data.prepare ---------------------------------------------

WORKER_MARK = "KOALA_PREPARE_WORKER"


def marked_worker() -> bool:
    """True in a process that :func:`marked_workers` started (and its re-import of the main
    script): it knows from its first line that it is one of prepare's workers."""
    return os.environ.get(WORKER_MARK) == "1"


@contextlib.contextmanager
def marked_workers():
    """Processes started inside inherit ``WORKER_MARK`` in their environment."""
    previous = os.environ.get(WORKER_MARK)
    os.environ[WORKER_MARK] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WORKER_MARK, None)
        else:
            os.environ[WORKER_MARK] = previous


def prepare_tensorboard() -> str | None:
    """The ``tensorboard`` program that the ``%tensorboard`` magic starts; None if TensorBoard
    is not installed.

    A virtual environment used without activating it (``.venv/bin/jupyter lab``) has the
    program beside Python but not on the PATH: it is then named in ``TENSORBOARD_BINARY``,
    the variable where the magic looks first.
    """
    import importlib.util
    import shutil

    if importlib.util.find_spec("tensorboard") is None:
        return None
    program = os.environ.get("TENSORBOARD_BINARY") or shutil.which("tensorboard")
    if not program:
        program = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
        if program:
            os.environ["TENSORBOARD_BINARY"] = program
    return program


def importing_main_in_a_worker() -> bool:
    """True while a "spawn" worker re-imports the parent's main script, before it runs its
    task. ``parent_process()`` is still None then (it is set after that import); what marks
    the phase is ``_inheriting`` (multiprocessing's own check) or the worker's command line
    flag ``--multiprocessing-fork`` (a worker that has started has a parent process)."""
    process = multiprocessing.current_process()
    return bool(getattr(process, "_inheriting", False)) or (
        "--multiprocessing-fork" in sys.argv and multiprocessing.parent_process() is None)


def stop_a_worker_importing_main() -> None:
    """Called first by :func:`~koala_lib.data.prepare.prepare`,
    :func:`~koala_lib.data.cleaning.clean` and
    :func:`~koala_lib.data.portraits.load_portraits`: a worker of ``prepare`` that
    re-imports a script without ``if __name__ == "__main__":`` must not redo the cleaning
    and the whole preparation (nor run the rest of the script). It exits quietly; the parent
    sees its pool broken and goes on in one process, with the warning that explains.

    Only this module's workers stop (their environment marks them, see
    :func:`marked_workers`): another
    library's "spawn" worker re-importing the same script goes through as it always did."""
    if marked_worker() and importing_main_in_a_worker():
        raise SystemExit(1)
