"""What else was tried for notebook 09 (issue 14), measured in the `cpu` profile.

1. Across sources the other way: both heads trained on UK Parliament portraits (2 epochs,
   notebook 09's cross-source budget), scored on US Congress validation persons.
2. A mixed objective: the classification loss plus 100 x the MSE of its annealed mean
   (``TrainConfig(mse_weight=100)``), the same budget as notebook 06, scored on the
   validation persons beside the plain classification head.

Run: KOALA_PROFILE=cpu .venv/bin/python benchmarks/objectives.py  (about 8 min on 2 cores)
"""

from dataclasses import replace

from koala_lib import course, evaluate, train
from koala_lib.data import load_portraits

TEMPERATURE = 0.6  # notebook 09's choice on the validation persons (cpu profile)
COLUMNS = ("prediction", "PSNR (dB)", "SSIM", "colourfulness gap", "chroma vs truth",
           "held-out loss")


def table(data, models, indices):
    predictions = evaluate.predictions(data, indices, {name: (model, TEMPERATURE)
                                                       for name, model in models.items()})
    return evaluate.table_markdown(evaluate.compare(data, indices, predictions).rows, COLUMNS)


def main():
    settings = course.settings_for("cpu")
    data = load_portraits(settings.load_extractor(verbose=False), image_size=settings.image_size,
                          images=settings.images, seed=0, progress=False)
    config = settings.train_config(seed=42, snapshot_images=0)
    build = course.run_dir("cpu", "objectives")
    uk, us = data.indices("train", "uk_parliament"), data.indices("val", "us_congress")
    cross = {head: train.train(data, replace(config, head=head,
                                             epochs=settings.cross_source_epochs),
                               build / f"uk_{head}", train_indices=uk, val_indices=us,
                               verbose=0).model
             for head in ("regression", "classification")}
    print(f"trained on {len(uk)} uk_parliament portraits, scored on {len(us)} us_congress "
          "validation persons")
    print(table(data, cross, us))
    heads = {name: train.train(data, replace(config, head="classification", mse_weight=weight),
                               build / f"classification_mse{weight:g}", verbose=0).model
             for name, weight in (("classification", 0.0), ("mixed, mse_weight 100", 100.0))}
    print("all sources, validation persons")
    print(table(data, heads, data.indices("val")))


if __name__ == "__main__":
    main()
