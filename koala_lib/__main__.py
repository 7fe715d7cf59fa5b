"""``python -m koala_lib colorize INPUT... --out DIR [--model PATH]``: colorize your photos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m koala_lib",
        description="koala: Deep Koalarization, taught and reproduced. Colorize black-and-"
                    "white photos with a model trained in notebook 06.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    colorize = commands.add_parser(
        "colorize", help="colorize image files and folders into a new folder",
        description="Colorize image files and folders (searched recursively). Each output "
                    "is a new PNG of exactly the input's size, named <name>_colorized.png "
                    "inside DIR (with -1, -2... when the name is taken): inputs are never "
                    "modified and nothing is written outside DIR. The colour is predicted "
                    "at the model's size and merged with the input's full-resolution "
                    "lightness. Files that cannot be colorized are listed with the reason. "
                    "Exit status: 0 when at least one image was written, 1 when none was.")
    colorize.add_argument("inputs", nargs="+", metavar="INPUT", type=Path,
                          help="image files or folders")
    colorize.add_argument("--out", required=True, type=Path, metavar="DIR",
                          help="output folder (created if missing)")
    colorize.add_argument("--model", type=Path, metavar="PATH",
                          help="a .keras model saved by notebook 06 (with its .json); "
                               "default: build/models/colorizer_<profile>.keras, gpu before "
                               "cpu before ci")
    colorize.add_argument("--batch-size", type=int, default=16, metavar="N",
                          help="images predicted together (default 16)")
    colorize.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from koala_lib import colorize

    try:
        path = args.model or colorize.default_model_path()
        trained, extractor = colorize.load_trained(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"model {path} ({trained.metadata['extractor']['name']} embeddings, trained at "
          f"{trained.image_size}x{trained.image_size})")
    report = colorize.colorize_files(args.inputs, args.out, trained, extractor,
                                     batch_size=args.batch_size, progress=not args.quiet)
    for source, target in report.written:
        print(f"wrote {target}  (from {source})")
    print(report.summary())
    return 0 if report.written else 1


if __name__ == "__main__":
    sys.exit(main())
