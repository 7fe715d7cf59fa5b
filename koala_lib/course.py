"""Running the course: profiles and their sizes, the course's folders, the Colab session.

A notebook's ``parameters`` cell says ``PROFILE = "auto"``; :func:`setup` turns it into one
of three profiles (:func:`resolve_profile`) and returns its :class:`CourseSettings`:

* ``ci``  -- tiny and fast: the regression run in CI (``KOALA_PROFILE=ci``, or ``CI`` set);
* ``cpu`` -- a small run that finishes in minutes on a laptop (no GPU visible);
* ``gpu`` -- the real run (a GPU is visible), what Colab's badges run;
* ``ci_gpu`` -- chosen by name only: the ``gpu`` profile's switches (Inception-ResNet-v2,
  widgets, LFW, tf_flowers, the extractor comparison, float16) at the ``ci`` profile's sizes,
  so that CI runs every branch Colab takes (the extractor untrained: no download);
* ``gpu_check`` -- chosen by name only: ``make gpu-check`` on a lent GPU with no internet.

Every size any notebook uses is a field of :class:`CourseSettings`, so a profile makes a run
small through its settings, never through ``if profile == ...`` in the teaching code. The
feature extractor is part of the profile too, stated, not guessed from the network:
MobileNetV2 with torchvision's ImageNet weights (offline) for ``ci`` and ``cpu``, the
paper's Inception-ResNet-v2 with Keras' ImageNet weights (downloaded once) for ``gpu``.

The folders (runs, models, results) live under :func:`koala_lib.environment.build_dir`;
what the tests record from each notebook is :mod:`koala_lib.records`.
"""

from __future__ import annotations

import ast
import csv
import platform
import shutil
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from koala_lib import budget, environment

# Keras (through train, features, evaluate, trained_model) is imported inside the functions
# that need it, not here: the first cell calls check_environment(), which must be able to say
# that Keras 3 is missing before anything imports Keras. google.colab and ipywidgets are
# imported where they are used: they exist on Colab and in JupyterLab only.

PROFILES = ("ci", "ci_gpu", "cpu", "gpu", "gpu_check")
MODEL_PREFERENCE = ("gpu", "cpu", "ci")  # the default model: the best-trained one found


# --- profiles ------------------------------------------------------------------------------


def resolve_profile(profile: str = "auto") -> str:
    """``auto`` -> ``ci`` | ``gpu`` | ``cpu``; an explicit profile is checked and returned.

    Order: an explicit ``profile`` argument, then ``KOALA_PROFILE``, then ``CI``
    (set by CI services), then whether a GPU is visible.
    """
    choice = str(profile).strip().lower()
    if choice not in (*PROFILES, "auto"):
        raise ValueError(f"unknown profile {profile!r}: use one of auto, {', '.join(PROFILES)}.")
    if choice != "auto":
        return choice
    env = environment.current()
    if env.profile and env.profile != "auto":
        if env.profile not in PROFILES:
            raise ValueError(
                f"KOALA_PROFILE={env.profile!r} is not a profile: use one of {', '.join(PROFILES)}."
            )
        return env.profile
    if env.ci:
        return "ci"
    return "gpu" if environment.visible_gpus() else "cpu"


@dataclass(frozen=True)
class CourseSettings:
    """Every size the notebooks use, for one profile (values: ``course_settings.csv``)."""

    profile: str
    extractor: str  # the frozen classifier and its weights (notebooks 04-08)
    extractor_weights: str
    progress: bool  # progress bars (off where nobody watches)
    widgets: bool  # interactive widgets (01's explorer, 06's epoch slider and TensorBoard)
    precision: str  # training precision (koala_lib.precision.PRECISIONS)
    # 01: portraits averaged for the dataset's mean a,b
    mean_portraits: int
    # 02: files cleaned (None: all) and the prepared size
    clean_files: int | None
    prepared_size: int
    # 04: portraits embedded twice to time the embedding cache
    cache_portraits: int
    # 05: over-fitting one photo
    overfit_size: int
    overfit_steps: int
    overfit_seeds: int  # each optimiser of the comparison runs from this many seeds
    # 06, 07 and 08: the course model (07's Table 1 and curve use its size and data)
    image_size: int
    images: int | None  # portraits sampled (None: all)
    batch_size: int
    epochs: int
    hand_epochs: int  # 06's training loop written by hand, checked against train.train
    # 07: Table 1 and section 4.3
    batch_scale: float  # 1.0: the report's batches
    max_micro_batch: int  # larger batches are accumulated from micro-batches of this size
    curve_epochs: int
    source_epochs: int
    source_batch_size: int
    overfit_one_steps: int
    # 08: evaluation and your photos
    black_and_white: int
    best_and_worst: int
    photo_step: int  # 1: your photo at full size; N: every Nth pixel (keeps files small)
    # 09: beyond the report
    lfw: bool  # LFW mixed into the portraits (downloaded through scikit-learn)
    lfw_min_faces: int  # only LFW persons with at least this many photos
    cross_source_epochs: int  # each model trained on one source, scored on the other
    full_size_portraits: int  # measured at full resolution for the upsampling
    # 10: learning rates, regularisation, ablations, other images, video
    study_image_size: int
    study_images: int | None  # training portraits of each study run (None: all)
    study_held_out: int | None  # held-out portraits scored per source (None: all)
    study_epochs: int
    study_batch_size: int
    study_seeds: int
    compare_extractors: bool  # Inception-ResNet-v2 against MobileNetV2 (needs the internet)
    scenes: str  # other images: "skimage" (offline) or "tf_flowers" (online)
    scene_images: int | None  # tf_flowers photos taken (None: all)
    scene_epochs: int
    video_seconds: float
    # time estimates: notebook 06's training rate on the profile's usual machine
    train_images_per_s: float
    train_rate_basis: str

    def train_config(self, **overrides):
        """The course model's :class:`koala_lib.train.TrainConfig`, with ``overrides``."""
        from koala_lib.train import TrainConfig

        values = {"batch_size": self.batch_size, "epochs": self.epochs,
                  "precision": self.precision}
        return TrainConfig(**{**values, **overrides})

    def load_extractor(self, name: str = "profile", verbose: bool = True):
        """The profile's extractor, or ``name`` ("mobilenet_v2", "inception_resnet_v2"),
        with the profile's weights when it is the profile's extractor, else its usual ones,
        or those named after a colon: ``"inception_resnet_v2:random"`` (offline machines:
        the same architecture and cost, untrained)."""
        from koala_lib.features import load_extractor

        name, _, weights = (f"{self.extractor}:{self.extractor_weights}" if name == "profile"
                            else name).partition(":")
        if not weights and name == self.extractor:
            weights = self.extractor_weights
        weights = {"": "auto", "random": None}.get(weights, weights)
        return load_extractor(name, weights, verbose=verbose)

    def describe(self) -> str:
        return (f"profile {self.profile}: course model on {self.images or 'all'} portraits at "
                f"{self.image_size}x{self.image_size}, {self.epochs} epochs of batch "
                f"{self.batch_size}; extractor {self.extractor} ({self.extractor_weights})")


def _read_settings() -> dict[str, CourseSettings]:
    """``course_settings.csv``: one row a setting, one column a profile, side by side."""
    text = resources.files("koala_lib").joinpath("course_settings.csv").read_text()
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))

    def value(text: str):
        try:
            return ast.literal_eval(text)  # numbers, True/False, None
        except (ValueError, SyntaxError):
            return text  # names such as mobilenet_v2

    return {profile: CourseSettings(profile, **{row["setting"]: value(row[profile])
                                                for row in rows})
            for profile in PROFILES}


SETTINGS = _read_settings()


def settings_for(profile: str = "auto") -> CourseSettings:
    return SETTINGS[resolve_profile(profile)]


DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = DRIVE_MOUNT / "MyDrive" / "koala"  # models, results, figures, embeddings
LOCAL_FOLDER = Path("/content/koala_cache")  # the runtime's disk: data, runs in progress


def use_drive(drive="auto") -> Path | None:
    """Mount Google Drive on Colab and keep there what must survive the runtime and pass to
    the next notebook: models, results, figures and the embedding cache
    (:func:`koala_lib.environment.use_course_folders`). The work (portraits, prepared
    arrays, run folders with their checkpoints) stays on the runtime's own disk: Drive reads
    small files slowly and keeps deleted ones in its Trash, within the 15 GB quota.
    ``drive``: ``"auto"`` (on Colab only), True or False. Returns the Drive folder, or
    None."""
    wanted = environment.in_colab() if drive == "auto" else bool(drive)
    if not wanted:
        return None
    if not environment.in_colab():
        warnings.warn("DRIVE = True needs Google Colab: keeping the local folders.",
                      stacklevel=2)
        return None
    from google.colab import drive as colab_drive

    colab_drive.mount(str(DRIVE_MOUNT))
    chosen = environment.use_course_folders(DRIVE_FOLDER, LOCAL_FOLDER)
    print(f"Google Drive: {', '.join(chosen) or 'the KOALA_* folders already set'}; models, "
          f"results, figures and embeddings in {DRIVE_FOLDER} (kept across sessions and "
          f"notebooks), portraits and runs in progress in {LOCAL_FOLDER} (this runtime's)")
    return DRIVE_FOLDER


def finish() -> None:
    """The last cell of a notebook that hands files to the next: on Colab, write what is
    still buffered to Google Drive (``drive.flush_and_unmount``), so that the next
    notebook's fresh runtime finds this one's model and results whole."""
    if not (environment.in_colab() and DRIVE_MOUNT.joinpath("MyDrive").is_dir()):
        print("Nothing to flush: no Google Drive mounted here.")
        return
    from google.colab import drive as colab_drive

    colab_drive.flush_and_unmount()
    print("Google Drive flushed and unmounted: the next notebook finds this one's files. "
          "To go on here, run the setup cell again.")


def setup(profile: str = "auto", drive="auto", portraits: bool = True,
          notebook: str | None = None) -> CourseSettings:
    """The one setup call of every notebook: Google Drive on Colab (:func:`use_drive`), the
    settings of ``profile`` (``auto`` resolved), printed with the environment and, for a
    ``notebook`` (its name, e.g. ``"06_training_on_gpu"``), how long it takes on a free
    Colab T4 (:mod:`koala_lib.budget`), and the portraits, downloaded now if a fresh
    runtime has none (``portraits=True``)."""
    use_drive(drive)
    settings = settings_for(profile)
    print(settings.describe())
    if notebook is not None:
        print(budget.describe(SETTINGS["gpu"], notebook))
    print(environment.current().describe())
    if portraits:
        from koala_lib.data.sources import NoPortraitsError, portrait_dir

        try:
            folder = portrait_dir(download=True, progress=settings.progress)
            print(f"portraits: {environment.readable_path(folder)}")
        except NoPortraitsError as error:
            warnings.warn(f"{error}\nThe notebook goes on with scikit-image's sample images.",
                          stacklevel=2)
    return settings


def check_environment(min_keras: str = "3.5", gpu_needed: bool = True) -> dict[str, str]:
    """Print versions, check Keras 3, and warn (not fail) when a GPU is needed but absent.

    Notebooks that only look at data pass ``gpu_needed=False``: the backend is not
    imported and no warning is given. Returns what it printed, as a dict.
    """
    info = {"python": platform.python_version(), **environment.package_versions()}
    keras_version = info.get("keras", "not installed")
    if keras_version == "not installed" or int(keras_version.split(".")[0]) < 3:
        raise RuntimeError(
            f"koala needs Keras 3 (found {keras_version}): pip install 'keras>={min_keras}'."
        )
    info["backend"] = environment.current().keras_backend
    if gpu_needed:
        backend_module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
        info.update(environment.package_versions(
            (backend_module.get(info["backend"], info["backend"]),)))
        gpus = environment.visible_gpus()
        info["gpus"] = str(gpus)
        if not gpus:
            warnings.warn(
                "No GPU visible: the notebook runs, but training will be slow. "
                "On Colab: Runtime > Change runtime type > GPU.",
                stacklevel=2,
            )
    else:
        info["gpus"] = "not needed here"
    print(" | ".join(f"{key} {value}" for key, value in info.items()))
    return info


# --- the course's folders and models -------------------------------------------------------


def run_dir(profile: str, name: str = "06_training") -> Path:
    """The run folder of a notebook's training (``name``) in ``profile``; the same name
    resumes the run."""
    return environment.runs_dir() / f"{name}_{profile}"


def start_from_run(source, target, data, config) -> bool:
    """Copy the run folder ``source`` (another notebook's training) to ``target`` when
    ``target`` holds no run yet and ``source`` is the run that training ``config`` on
    ``data`` continues (the same settings, data and splits; fewer epochs), so that only the
    later epochs train. Returns whether it copied; ``source``'s folder is never changed,
    and a run of other settings (06 run with other parameters) is left alone."""
    from koala_lib.train import continues

    source, target = Path(source), Path(target)
    if target.exists() or not continues(source, data, config):
        return False
    staging = target.with_name(f".{target.name}.copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(target)  # a folder half copied is never taken for a run
    return True


def model_path(profile: str, create: bool = True) -> Path:
    """Where notebook 06 saves the model it trains in ``profile``."""
    return environment.build_dir(create) / "models" / f"colorizer_{profile}.keras"


def default_model_path() -> Path:
    """The model of the most thorough profile trained so far (gpu, then cpu, then ci)."""
    for profile in MODEL_PREFERENCE:
        if model_path(profile, create=False).is_file():
            return model_path(profile, create=False)
    raise FileNotFoundError(
        f"no trained model in {model_path('gpu', create=False).parent}: run notebook 06 (it saves "
        f"colorizer_<profile>.keras there), or pass --model PATH.")


def save_course_model(result, data, profile: str, **metadata) -> Path:
    """Save a :class:`koala_lib.train.TrainResult` as the ``profile``'s course model, with
    the training images' mean a,b (the mean-colour baseline of ``evaluate``)."""
    from koala_lib.evaluate import mean_ab
    from koala_lib.trained_model import save_trained

    last = result.history[-1]
    return save_trained(result.model, model_path(profile), data.extractor, data.image_size,
                        # Names, not paths: a shared model tells nothing of the
                        # trainer's folders.
                        profile=profile, data=data.describe(), data_folder=data.folder.name,
                        epochs=result.epochs_done, run_dir=Path(result.run_dir).name,
                        final_loss=last.get("loss"), final_val_loss=last.get("val_loss"),
                        train_mean_ab=mean_ab(data, data.indices("train")), **metadata)


def training_estimate(data, settings: CourseSettings) -> str:
    """How long notebook 06's training takes for ``settings``, from its rate setting."""
    images = len(data.indices("train")) * settings.epochs
    seconds = images / settings.train_images_per_s
    duration = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    return (f"about {duration}: {images:,} images "
            f"({settings.epochs} epochs) at about {settings.train_images_per_s:g} images/s, "
            f"{settings.train_rate_basis}")


def course_model(data, settings: CourseSettings, seed: int = 42, verbose="auto") -> Path:
    """Notebook 06's model for ``settings``: the saved file, or trained now (resuming
    notebook 06's run folder if it was started) and saved."""
    from koala_lib.train import train

    path = model_path(settings.profile)
    if path.is_file():
        print(f"Notebook 06's model: {environment.readable_path(path)}")
        return path
    print(f"No {path.name} in {environment.readable_path(path.parent)} (run notebook 06 "
          f"first to reuse its model). Training notebook 06's {settings.profile} run now, "
          f"{training_estimate(data, settings)}; a started run resumes.")
    result = train(data, settings.train_config(seed=seed), run_dir(settings.profile),
                   verbose=verbose)
    return save_course_model(result, data, settings.profile)


# --- your photos ---------------------------------------------------------------------------


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, content) of each file in a ``FileUpload`` widget's value: ipywidgets 8 gives
    a tuple of dicts with ``name`` and ``content``; ipywidgets 7 (Colab's) a dict
    ``{name: {"metadata": {...}, "content": bytes}}``."""
    if isinstance(value, dict):
        return [(item.get("metadata", {}).get("name", name), bytes(item["content"]))
                for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


def photo_upload(on_photo, method: str = "auto"):
    """Ask for photos and call ``on_photo(name, content)`` for each.

    ``method``: ``"colab"`` opens Colab's upload dialog and waits (it takes files of any
    size; Colab's ipywidgets drops files of about 1 MB or more), ``"widget"`` returns an
    ipywidgets ``FileUpload`` box to display, ``"auto"`` picks Colab's dialog on Colab.
    Returns the box to display, or None.
    """
    if method not in ("auto", "colab", "widget"):
        raise ValueError(f"unknown upload method {method!r}: use auto, colab or widget.")
    if method == "auto":
        method = "colab" if environment.in_colab() else "widget"
    if method == "colab":
        from google.colab import files

        for name, content in files.upload().items():
            on_photo(name, bytes(content))
        return None
    try:
        import ipywidgets as widgets
    except ImportError:
        print("No upload widget: ipywidgets is not installed (pip install ipywidgets). Set "
              "YOUR_PHOTO to a file's path instead.")
        return None
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload a photo")
    shown = widgets.Output()

    def changed(change):
        with shown:
            shown.clear_output()
            for name, content in uploaded_files(change["new"]):
                on_photo(name, content)

    upload.observe(changed, names="value")
    return widgets.VBox([upload, shown])
