"""Benchmark: training images/s, on the path learners run and on arrays already in memory.

    .venv/bin/python benchmarks/training.py                       # CPU: small defaults
    .venv/bin/python benchmarks/training.py --size 224 --batch 32 --portraits 512
    KERAS_BACKEND=jax python benchmarks/training.py --size 224 --batch 256 --steps 40
                                                                   # a GPU (H100: bfloat16)

Prints one JSON object:

* ``learners_path``: :func:`koala_lib.train.train` on prepared portraits (``KOALA_DATA_DIR``,
  or the built-in samples), as the notebooks call it: the feeder's stored bytes, the step,
  the validation pass and the checkpoint of every epoch. Preparing and embedding the
  portraits and the first epoch (compilation) are timed apart. ``input_wait_fraction`` is
  the part of the training time spent in the feeder's ``__getitem__`` (its batches are read
  in the training loop's thread, so the step waits for them).
* ``feeder``: the feeder alone over those portraits, stored bytes and float batches.
* ``cached``: the colorizer on random arrays already in memory (L, embedding) -> a,b, the
  figure of earlier versions; ``inline`` puts the frozen classifier (MobileNetV2 by default,
  ``--extractor inception_resnet_v2`` for the paper's) inside the step. Random inputs and
  weights cost the same as real ones; the first steps (compilation) are not timed.

Not a test: numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace

import keras
import numpy as np
from keras import ops

from koala_lib import color, course, data, train
from koala_lib.data.feeder import ColorizationFeeder
from koala_lib.environment import visible_gpus
from koala_lib.features import EXTRACTORS, FeatureExtractor
from koala_lib.losses import report_mse
from koala_lib.model import build_colorizer
from koala_lib.precision import precision_policy, resolve_precision
from koala_lib.trainer import keeps_resident


def inline_model(size: int, extractor: FeatureExtractor) -> keras.Model:
    """L -> the extractor's graph (gray RGB, resize, normalise, classifier) -> colorizer."""
    lightness = keras.Input((size, size, 1), name="L")
    extractor.model.trainable = False
    logits = extractor.embedder(size)(unscale_l(lightness))
    colorizer = build_colorizer(size, int(logits.shape[-1]))
    return keras.Model(lightness, colorizer([lightness, logits]))


def unscale_l(scaled_l):
    return (ops.cast(scaled_l, "float32") + 1.0) * color.L_SCALE


def images_per_second(model, inputs, targets, batch: int, steps: int, warmup: int) -> float:
    model.compile(keras.optimizers.Adam(1e-3, clipnorm=1.0), loss=report_mse)
    model.fit(inputs, targets, batch_size=batch, epochs=1, steps_per_epoch=warmup, verbose=0)
    start = time.perf_counter()
    model.fit(inputs, targets, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0)
    return batch * steps / (time.perf_counter() - start)


def feeder_images_per_second(portraits, batch: int, seconds: float = 3.0, **options) -> float:
    """The feeder alone: batches of the training images (flipped at random) for ``seconds``."""
    feeder = ColorizationFeeder(portraits.prepared, portraits.embeddings,
                                portraits.indices("train"), batch, flip=True, **options)
    feeder[0]  # the page cache warm, as in a training run's second epoch
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for index in range(len(feeder)):
            images += len(feeder[index][1])
        feeder.on_epoch_end()
    return images / (time.perf_counter() - start)


def learners_path(args, precision: str) -> dict:
    """train.train on prepared portraits: images/s of the epochs after the first, and the
    part of them spent waiting for the feeder."""
    start = time.perf_counter()
    extractor = FeatureExtractor(args.extractor, "torchvision" if args.extractor ==
                                 "mobilenet_v2" else None)  # offline: untrained, same cost
    portraits = data.load_portraits(extractor, os.environ.get("KOALA_DATA_DIR") or None,
                                    image_size=args.size, progress=False,
                                    images=args.portraits if args.portraits > 0 else None)
    prepared_s = time.perf_counter() - start
    lightness = portraits.prepared.lightness_view()
    extractor.embed(lightness[:8])  # tracing, not timed
    embed_s = time.perf_counter()
    extractor.embed(lightness, batch_size=args.batch)  # again, as the cache's first time
    embed_s = time.perf_counter() - embed_s
    waited = []
    read = ColorizationFeeder.__getitem__

    def timed(feeder, index):  # the real feeder's batches, timed where the step waits
        began = time.perf_counter()
        try:
            return read(feeder, index)
        finally:
            if feeder.shuffle:  # the training feeder's, not the validation's
                waited.append(time.perf_counter() - began)

    epochs = 1 + args.epochs
    config = replace(course.SETTINGS["gpu"].train_config(), batch_size=args.batch,
                     epochs=epochs, steps_per_epoch=args.steps, precision=precision,
                     snapshot_images=6)
    ColorizationFeeder.__getitem__ = timed
    try:
        with tempfile.TemporaryDirectory() as folder:
            result = train.train(portraits, config, folder, verbose=0)
    finally:
        ColorizationFeeder.__getitem__ = read
    history = result.history[1:]  # row 0: the untrained network's validation loss
    per_epoch = args.steps * args.batch
    train_s = sum(row["train_seconds"] for row in history[1:])
    feeder_s = sum(waited[args.steps:])  # after the first epoch
    return {"portraits": len(portraits.prepared), "train_images": len(portraits.indices("train")),
            "val_images": len(portraits.indices("val")),
            "data_on_device": keeps_resident(portraits, "auto", config.max_zoom),
            "prepare_and_embed_s": round(prepared_s, 1),
            "extractor": f"{extractor.name} ({extractor.weights_name})",
            "embed_images_per_s": round(len(portraits.prepared) / embed_s, 1),
            "first_epoch_s": round(history[0]["train_seconds"], 2),
            "timed_epochs": len(history) - 1, "images_per_epoch": per_epoch,
            "images_per_s": round(per_epoch * (len(history) - 1) / train_s, 1),
            "input_wait_fraction": round(feeder_s / train_s, 4),
            "feeder_packed_images_per_s": round(feeder_images_per_second(
                portraits, args.batch, packed=True), 1),
            "feeder_float_images_per_s": round(feeder_images_per_second(
                portraits, args.batch), 1)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    gpu = visible_gpus() > 0
    parser.add_argument("--size", type=int, default=224 if gpu else 64)
    parser.add_argument("--batch", type=int, default=128 if gpu else 16)
    parser.add_argument("--steps", type=int, default=40 if gpu else 4)
    parser.add_argument("--warmup", type=int, default=5 if gpu else 1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--extractor", default="mobilenet_v2", choices=sorted(EXTRACTORS))
    parser.add_argument("--skip-inline", action="store_true")
    parser.add_argument("--portraits", type=int, default=512 if gpu else 128,
                        help="portraits prepared for the learners' path (0: skip it; "
                             "-1: all)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs of --steps batches timed after the first")
    args = parser.parse_args()
    precision = resolve_precision(args.precision)
    keras.utils.set_random_seed(0)
    count = args.batch * args.steps
    rng = np.random.default_rng(0)
    lightness = rng.uniform(-1, 1, (count, args.size, args.size, 1)).astype("float32")
    ab = rng.uniform(-0.3, 0.3, (count, args.size, args.size, 2)).astype("float32")
    embeddings = rng.normal(0, 3, (count, 1000)).astype("float32")
    results = {"backend": keras.backend.backend(), "gpus": visible_gpus(),
               "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "precision": precision, "size": args.size, "batch": args.batch,
               "timed_steps": args.steps}
    with precision_policy(precision):
        cached = build_colorizer(args.size)
        results["cached_images_per_s"] = round(images_per_second(
            cached, [lightness, embeddings], ab, args.batch, args.steps, args.warmup), 1)
        if not args.skip_inline:
            inline = inline_model(args.size, FeatureExtractor(args.extractor, None))
            results["inline_extractor"] = args.extractor
            results["inline_images_per_s"] = round(images_per_second(
                inline, lightness, ab, args.batch, args.steps, args.warmup), 1)
            results["cached_speedup"] = round(
                results["cached_images_per_s"] / results["inline_images_per_s"], 2)
    if args.portraits:
        results["learners_path"] = learners_path(args, precision)
        # The random arrays again, after: this machine's speed can drift between the two
        # (a shared 2-core VM moved by 30%), so the ratio is taken to their mean.
        with precision_policy(precision):
            results["cached_images_per_s_after"] = round(images_per_second(
                build_colorizer(args.size), [lightness, embeddings], ab, args.batch,
                args.steps, args.warmup), 1)
        results["learners_over_random_arrays"] = round(
            results["learners_path"]["images_per_s"] / np.mean(
                [results["cached_images_per_s"], results["cached_images_per_s_after"]]), 3)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
