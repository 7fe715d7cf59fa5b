"""What each notebook costs in a profile: minutes on a free Colab T4, bytes written to Drive.

The course is meant to be run from its badges in one free Colab sitting, a couple of hours at
most. :func:`notebook_costs` counts each notebook's work from the profile's settings (images
trained on, embeddings computed, files read, steps of batch one) and multiplies the counts
by rates per step: the :data:`RATES` table says for each rate whether it was measured (on
what) or assumed, and why. It is an estimate, to keep the settings honest and to tell a
learner what to expect before a long cell; the notebooks print it at their top
(:func:`describe`), and ``tests/test_budget.py`` holds the ``gpu`` profile to
:data:`NOTEBOOK_BUDGET_S` a notebook and :data:`COURSE_BUDGET_S` in all, and to
:data:`DRIVE_BUDGET_BYTES` written to Google Drive (deleted files count: Drive keeps them
in its Trash, within the same quota).

What goes to Drive (``koala_lib.environment``): models, results, figures, the embedding
cache and the portraits as one archive. Prepared arrays and run folders (a checkpoint every
epoch) stay on the runtime's disk, so a fresh runtime unpacks and prepares again (counted
here) but reuses the embeddings an earlier notebook computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOTEBOOKS = ("01_lab_color_space", "02_portrait_dataset", "03_encoder", "04_inception_fusion",
             "05_decoder_and_model", "06_training_on_gpu", "07_reproduce_table1",
             "08_evaluate_and_colorize", "09_beyond_the_report", "10_beyond_the_report_part2")
NOTEBOOK_BUDGET_S = 15 * 60  # a notebook on a free T4
COURSE_BUDGET_S = 90 * 60  # the whole course: one free Colab sitting
DRIVE_BUDGET_BYTES = 3 * 10**9  # of the free 15 GB, shared with Gmail and Photos

# The data (counted in the shared portrait folder and the sources' own documentation).
PORTRAITS = 2168  # colour portraits: US Congress 820, UK Parliament 1348
FILES = 2228  # with the 60 black-and-white ones
US_CONGRESS = 820
PORTRAIT_BYTES = 79_000_000  # all 2,228 files (measured: 75.6 MiB), as one archive on Drive
LFW_PHOTOS = 13233
LFW_PHOTOS_BY_MIN_FACES = {0: 13233, 20: 3023, 50: 1560, 70: 1288}  # scikit-learn's docs
TF_FLOWERS_PHOTOS = 3670
TRAIN_FRACTION = 0.8  # the split by person: 80% train, 10% validation, 10% test
HELD_OUT_FRACTION = 0.1
REPORT_TABLE1_IMAGES = 4000 * 10 * 1 + 100 * 10 * 1 + 10 * 100 * 2 + 100 * 10 * 3
# Runs 2 and 4 again from experiments.REPLICATE_SEEDS (two more seeds): run 4's test.
TABLE1_REPLICATED_IMAGES = 2 * (100 * 10 * 1 + 100 * 10 * 3)


@dataclass(frozen=True)
class Rate:
    value: float
    unit: str
    source: str


RATES = {
    "step_overhead": Rate(0.005, "s/step", "assumed: a compiled step's launch and host "
                          "work, what dominates at small images and batch one"),
    "compile": Rate(20, "s/run", "assumed: XLA compiles a training run's step (TensorFlow "
                    "on a T4)"),
    "embed": Rate(19, "images/s", "measured on the H200 machine: Inception-ResNet-v2 "
                  "embeddings, limited by scikit-image resizing each image to 299 on the CPU; "
                  "the resize now runs in the extractor's graph, not yet measured on a GPU: "
                  "kept as the safe bound"),
    "embed_mobilenet": Rate(100, "images/s", "assumed: MobileNetV2 at 224 (no resize), a "
                            "smaller network; kept from the host-preprocessing version"),
    "download": Rate(40, "files/s", "assumed: 8 threads fetching 10-40 KB portraits"),
    "drive_read": Rate(20e6, "bytes/s", "assumed: one large file read from the Drive mount "
                       "on a fresh runtime"),
    "clean": Rate(214, "files/s", "measured on a 2-core CPU (benchmarks/prepare.py, the "
                  "shared folder): decode, size, colour spread; Colab's free tier has 2 too"),
    "prepare_224": Rate(272, "images/s", "measured on a 2-core CPU (benchmarks/prepare.py, "
                        "2 workers): decode, crop, resize to 224, Lab"),
    "held_out_metrics": Rate(4, "s/epoch", "measured on a 2-core CPU: SSIM and colour on "
                             "217 held-out portraits after each epoch (notebook 07's curve)"),
    "lfw_unpack": Rate(200, "files/s", "assumed: scikit-learn unpacks 233 MB and reads "
                       "each of 13,233 photos once"),
    "setup": Rate(60, "s/notebook", "assumed: a fresh runtime: pip install, imports, the "
                  "Drive mount's click"),
    "colorize": Rate(5, "photos/s", "assumed: a full-size photo's embedding, prediction, "
                     "upsampling and PNG"),
}

# Bytes written to Drive.
MODEL_BYTES = 26_400_000  # a saved colorizer .keras (measured: 26,381,833 bytes)
FIGURE_BYTES = 300_000  # a saved PNG figure (order of the committed ones)
TABLE_BYTES = 20_000  # a table's .md and .csv
EMBEDDING_BYTES = 1000 * 4  # one image's 1000 float32 logits
PHOTO_BYTES = 150_000  # a colorized portrait's PNG
VIDEO_BYTES = 150_000  # a second of colorized clip


@dataclass
class Cost:
    """One notebook's work: seconds by step, and bytes written to Drive by kind."""

    seconds: dict[str, float] = field(default_factory=dict)
    drive_bytes: dict[str, float] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0) + seconds

    def write(self, kind: str, count: float, each: float) -> None:
        self.drive_bytes[kind] = self.drive_bytes.get(kind, 0) + count * each

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_bytes(self) -> float:
        return sum(self.drive_bytes.values())


def _rate(name: str) -> float:
    return RATES[name].value


def _train(cost: Cost, rate_224: float, step: str, images: float, size: int, batch: int,
           runs: int = 1, validated: float = 0) -> None:
    """``images`` trained on at ``size`` in batches of ``batch``, over ``runs`` runs, and
    ``validated`` images predicted for the held-out loss (a forward pass: a third of a
    training step's work), at ``rate_224`` images/s at 224x224 (the profile's
    ``train_images_per_s``)."""
    rate = rate_224 * (224 / size) ** 2  # the work scales with the pixels
    steps = images / max(batch, 1)
    cost.add(step, (images + validated / 3) / rate + steps * _rate("step_overhead")
             + runs * _rate("compile"))


def _portraits(cost: Cost) -> None:
    """A fresh runtime's portraits: the archive notebook 01 kept on Drive, unpacked."""
    cost.add("portraits from Drive", PORTRAIT_BYTES / _rate("drive_read"))


def _fresh_data(cost: Cost, images: float, size: int, embed: bool, extractor: str) -> None:
    """A fresh runtime's data: the portraits, cleaned, prepared at ``size``; embeddings
    computed when no earlier notebook left them on Drive (``embed``)."""
    _portraits(cost)
    cost.add("clean and prepare", FILES / _rate("clean")
             + images / (_rate("prepare_224") * min(4.0, (224 / size) ** 2)))
    if embed:
        rate = _rate("embed") if extractor == "inception_resnet_v2" else _rate("embed_mobilenet")
        cost.add("embeddings", images / rate)
        cost.write("embeddings", images, EMBEDDING_BYTES)


def _figures(cost: Cost, figures: int, tables: int = 0) -> None:
    cost.write("figures and tables", figures, FIGURE_BYTES)
    cost.write("figures and tables", tables, TABLE_BYTES)


def notebook_costs(settings) -> dict[str, Cost]:
    """Each notebook's :class:`Cost` in the profile of ``settings`` (a
    ``koala_lib.course.CourseSettings``), the notebooks run in order on fresh runtimes
    sharing one Drive folder, as docs/colab.md describes."""
    s = settings
    rate = s.train_images_per_s  # images/s at 224x224 on the profile's machine
    images = s.images or PORTRAITS
    train = images * TRAIN_FRACTION
    held_out = images * HELD_OUT_FRACTION
    costs = {name: Cost() for name in NOTEBOOKS}
    for cost in costs.values():
        cost.add("setup", _rate("setup"))

    c = costs["01_lab_color_space"]
    c.add("download", FILES / _rate("download"))
    c.write("portraits archive", 1, PORTRAIT_BYTES)
    c.add("mean colour", s.mean_portraits / _rate("clean"))
    _figures(c, 4)

    c = costs["02_portrait_dataset"]
    _portraits(c)
    c.add("clean and prepare", (s.clean_files or FILES) / _rate("clean")
          + (s.clean_files or PORTRAITS) / (_rate("prepare_224")
                                            * min(4.0, (224 / s.prepared_size) ** 2)))
    _figures(c, 5)

    _portraits(costs["03_encoder"])
    _figures(costs["03_encoder"], 1)

    c = costs["04_inception_fusion"]
    _portraits(c)
    c.add("embeddings", 2 * s.cache_portraits / _rate("embed"))  # once timed, once cached
    c.write("embeddings", s.cache_portraits, EMBEDDING_BYTES)
    _figures(c, 2)

    c = costs["05_decoder_and_model"]
    _portraits(c)
    runs = 6 * s.overfit_seeds  # 3 optimisers x 2 fusions
    _train(c, rate, "over-fitting one photo", runs * s.overfit_steps, s.overfit_size, 1, runs)
    _figures(c, 2)

    c = costs["06_training_on_gpu"]
    _fresh_data(c, images, s.image_size, True, s.extractor)
    epochs = s.epochs + 2 * s.hand_epochs  # the run, the loop by hand, train.train's
    _train(c, rate, "training", train * epochs, s.image_size, s.batch_size, runs=3,
           validated=held_out * epochs)
    c.write("model", 1, MODEL_BYTES)
    _figures(c, 2)

    c = costs["07_reproduce_table1"]
    _fresh_data(c, images, s.image_size, False, s.extractor)
    _train(c, rate, "Table 1", REPORT_TABLE1_IMAGES * s.batch_scale, s.image_size, 100, runs=4)
    _train(c, rate, "Table 1", TABLE1_REPLICATED_IMAGES * s.batch_scale, s.image_size, 100,
           runs=4, validated=4 * held_out)
    # 06's run is on another runtime's disk: the curve trains from the first epoch
    _train(c, rate, "more epochs", train * s.curve_epochs, s.image_size, s.batch_size,
           validated=held_out * s.curve_epochs)
    c.add("more epochs", s.curve_epochs * _rate("held_out_metrics"))
    narrow = min(train, US_CONGRESS * TRAIN_FRACTION)
    _train(c, rate, "narrow and diverse", 2 * narrow * s.source_epochs, s.image_size,
           s.source_batch_size, runs=2)
    # the course's settings and the report's (plain Adam, raw logits)
    _train(c, rate, "over-fitting one portrait", 2 * s.overfit_one_steps, s.image_size, 1,
           runs=2)
    _figures(c, 4, 1)

    c = costs["08_evaluate_and_colorize"]
    _fresh_data(c, images, s.image_size, False, s.extractor)
    c.add("colorizing", (s.black_and_white + 1) / _rate("colorize"))
    c.write("colorized photos", s.black_and_white + 1, PHOTO_BYTES)
    _figures(c, 2)

    c = costs["09_beyond_the_report"]
    lfw = LFW_PHOTOS_BY_MIN_FACES[s.lfw_min_faces] if s.lfw and s.images is None else 0
    mixed = images + lfw
    if s.lfw:
        c.add("LFW", LFW_PHOTOS / _rate("lfw_unpack"))  # all of it unpacked, then chosen
    _fresh_data(c, mixed, s.image_size, False, s.extractor)  # the portraits': from Drive
    c.add("embeddings", lfw / _rate("embed"))
    c.write("embeddings", lfw, EMBEDDING_BYTES)
    mixed_train = mixed * TRAIN_FRACTION
    _train(c, rate, "two heads", 2 * mixed_train * s.epochs, s.image_size, s.batch_size, runs=2,
           validated=2 * mixed * HELD_OUT_FRACTION * s.epochs)
    _train(c, rate, "cross-source", 2 * narrow * s.cross_source_epochs, s.image_size, s.batch_size,
           runs=2)
    c.add("upsampling", s.full_size_portraits / _rate("colorize"))
    c.add("colorizing", 6 / _rate("colorize"))
    c.write("model", 1, MODEL_BYTES)
    c.write("colorized photos", 6, PHOTO_BYTES)
    _figures(c, 6, 1)

    c = costs["10_beyond_the_report_part2"]
    _fresh_data(c, images, s.study_image_size, s.study_image_size != s.image_size, s.extractor)
    study_train = min(narrow, s.study_images or narrow)
    settings_trained = 6 + 2 + 2 + 1  # learning rates x clipping, regularisation, ablation,
    # the portrait models (the shared "none"/"real" runs counted once)
    if s.compare_extractors:
        settings_trained += 1  # the other extractor's
        c.add("embeddings", images / _rate("embed_mobilenet"))
        c.write("embeddings", images, EMBEDDING_BYTES)
    runs = settings_trained * s.study_seeds
    _train(c, rate, "studies", runs * study_train * s.study_epochs, s.study_image_size,
           s.study_batch_size, runs, validated=runs * held_out * s.study_epochs)
    scenes = (min(s.scene_images or TF_FLOWERS_PHOTOS, TF_FLOWERS_PHOTOS)
              if s.scenes == "tf_flowers" else 120)
    if s.scenes == "tf_flowers":
        c.add("tf_flowers", scenes / _rate("download") + scenes / _rate("clean"))
    c.add("embeddings", scenes / _rate("embed"))
    c.write("embeddings", scenes, EMBEDDING_BYTES)
    _train(c, rate, "scenes", s.study_seeds * scenes * TRAIN_FRACTION * s.scene_epochs,
           s.study_image_size, s.study_batch_size, s.study_seeds)
    c.add("video", s.study_seeds * s.video_seconds * 12 / 30)  # 12 frames/s, ~30 frames/s
    c.write("model", 1, MODEL_BYTES)
    c.write("videos", s.study_seeds * s.video_seconds, VIDEO_BYTES)
    _figures(c, 5, 7)
    return costs


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def describe(settings, notebook: str) -> str:
    """One line for a notebook's top: what it and the course take in the ``gpu`` profile on
    a free T4 (``settings``: that profile's), by this module's estimate."""
    costs = notebook_costs(settings)
    cost = costs[notebook]
    biggest = max(cost.seconds, key=cost.seconds.get)
    return (f"On a free Colab T4 ({settings.profile} profile) this notebook takes about "
            f"{minutes(cost.total_s)} (most: {biggest}, {minutes(cost.seconds[biggest])}), "
            f"the course about {minutes(sum(c.total_s for c in costs.values()))}: an "
            f"estimate from counts and rates (koala_lib.budget).")


def table(settings) -> str:
    """A Markdown table of every notebook's minutes and Drive megabytes in ``settings``'
    profile, with the rates it rests on."""
    costs = notebook_costs(settings)
    lines = [f"Estimated for a free Colab T4, profile `{settings.profile}` (koala_lib.budget):",
             "", "| notebook | minutes | most of it | MB written to Drive |", "|---|---|---|---|"]
    for name, cost in costs.items():
        biggest = max(cost.seconds, key=cost.seconds.get)
        lines.append(f"| {name} | {cost.total_s / 60:.1f} | {biggest} "
                     f"({minutes(cost.seconds[biggest])}) | {cost.total_bytes / 1e6:.0f} |")
    lines.append(f"| **course** | **{sum(c.total_s for c in costs.values()) / 60:.0f}** | | "
                 f"**{sum(c.total_bytes for c in costs.values()) / 1e6:.0f}** |")
    lines += ["", "| rate | value | source |", "|---|---|---|"]
    lines.append(f"| training at 224x224 | {settings.train_images_per_s:g} images/s | "
                 f"{settings.train_rate_basis} (the profile's train_images_per_s) |")
    lines += [f"| {name} | {rate.value:g} {rate.unit} | {rate.source} |"
              for name, rate in RATES.items()]
    return "\n".join(lines)

