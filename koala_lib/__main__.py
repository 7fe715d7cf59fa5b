"""The command line.

* ``python -m koala_lib colorize INPUT... --out DIR [--model PATH] [--upsample bilinear]
  [--smoothing W]``: colorize your photos and black-and-white videos;
* ``python -m koala_lib evaluate FOLDER --model PATH [--size N] [--json OUT]``: measure a
  saved model on a folder of colour photos against the gray and mean-a,b baselines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from koala_lib.colorize_video import SMOOTHING, STATIC_THRESHOLD, VIDEO_SUFFIXES
    from koala_lib.data.images import MAX_IMAGE_SIZE

    parser = argparse.ArgumentParser(
        prog="python -m koala_lib",
        description="koala: Deep Koalarization, taught and reproduced. Colorize black-and-"
                    "white photos and videos with a model trained in notebook 06.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    colorize = commands.add_parser(
        "colorize", help="colorize image and video files, and folders of images, into a "
                         "new folder",
        description="Colorize image files and folders (searched recursively), and video "
                    f"files ({' '.join(VIDEO_SUFFIXES)}, named one by one). Each image's "
                    "output is a new PNG of exactly the input's size, named "
                    "<name>_colorized.png inside DIR; each video's, a new H.264 MP4 named "
                    "<name>_colorized.mp4, with the same size, frames, timing and sound (the "
                    "audio copied as it is). Names get -1, -2... when taken: inputs are "
                    "never modified and nothing is written outside DIR. The colour is "
                    "predicted at the model's size, upsampled (guided by the input's "
                    "lightness, unless --upsample bilinear) and merged with the input's "
                    "full-resolution lightness. For videos the flicker (the mean change of "
                    "colour between frames where the lightness did not change) is printed "
                    "before and after --smoothing. Files that cannot be colorized are listed "
                    "with the reason. Exit status: 0 when at least one image or video was "
                    "written, 1 when none was.")
    colorize.add_argument("inputs", nargs="+", metavar="INPUT", type=Path,
                          help="image or video files, or folders of images")
    colorize.add_argument("--out", required=True, type=Path, metavar="DIR",
                          help="output folder (created if missing)")
    colorize.add_argument("--model", type=Path, metavar="PATH",
                          help="a .keras model saved by notebook 06 (with its .json); "
                               "default: build/models/colorizer_<profile>.keras, gpu before "
                               "cpu before ci")
    colorize.add_argument("--batch-size", type=int, default=16, metavar="N",
                          help="images, or video frames, predicted together (default 16)")
    colorize.add_argument("--upsample", choices=("guided", "bilinear"), default="guided",
                          help="how the colour is upsampled to the photo's size: guided (the "
                               "default) moves colour edges towards the photo's lightness "
                               "edges with OpenCV's guided filter (pip install "
                               "opencv-contrib-python-headless); bilinear needs nothing more "
                               "but lets colour bleed further across edges")
    colorize.add_argument("--temperature", type=float, metavar="T",
                          help="classification models only: the read-out temperature, from 0 "
                               "(the likeliest colour, vivid) to 1 (the mean, grayish); "
                               "default: the one saved with the model")
    colorize.add_argument("--smoothing", type=float, default=SMOOTHING, metavar="W",
                          help="videos only: the weight, from 0 (off) up to 1 excluded, of "
                               "the previous frame's colour on pixels whose lightness changed "
                               f"by less than {STATIC_THRESHOLD:g} L units (where it moved, "
                               "the new colour is taken as it is); higher flickers less but "
                               f"trails longer (default {SMOOTHING:g})")
    colorize.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = commands.add_parser(
        "evaluate", help="measure a saved model on a folder of colour photos",
        description="Measure a saved model on the colour photos of FOLDER (searched "
                    "recursively; black-and-white, unreadable and tiny files are skipped "
                    "and listed). Protocol: each photo is cut and stored exactly as for "
                    "training (the top square of a tall photo, the centre square of a wide "
                    "one, resized to the model's size; L rounded to 8 bits, a,b to "
                    "integers), the model predicts a,b from that L, and the prediction (the "
                    "stored L + the predicted a,b) is compared with the photo as 8-bit "
                    "sRGB: PSNR (capped at 100 dB), SSIM (Gaussian sigma 1.5), "
                    "colourfulness and its gap to the truth, mean chroma and hue, and the "
                    "a,b MSE (the training loss). The same is measured for two predictions "
                    "that need no training: gray (a = b = 0) and the training images' mean "
                    "a,b. Exit status 1 when the folder holds no colour photo.")
    evaluate.add_argument("folder", type=Path, metavar="FOLDER", help="a folder of colour photos")
    evaluate.add_argument("--model", required=True, type=Path, metavar="PATH",
                          help="a .keras model saved by notebook 06 (with its .json)")
    evaluate.add_argument("--size", type=int, metavar="N",
                          help=f"the square size to measure at (a multiple of 8 up to "
                               f"{MAX_IMAGE_SIZE}; default: the size the model was trained at)")
    evaluate.add_argument("--temperature", type=float, metavar="T",
                          help="classification models only: the read-out temperature "
                               "(default: the one saved with the model)")
    evaluate.add_argument("--json", type=Path, metavar="OUT",
                          help="also write the table and the protocol as JSON to OUT")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _check_temperature(temperature) -> None:
    """Before the model loads (Keras takes seconds to start): quantize needs no Keras."""
    from koala_lib.quantize import check_temperature

    if temperature is not None:
        check_temperature(temperature, "--temperature")


def _load_model(path, temperature=None):
    from koala_lib.trained_model import load_trained

    trained, extractor = load_trained(path)
    if temperature is not None:
        trained = trained.with_temperature(temperature, "--temperature")
    print(f"model {path} ({trained.describe()})")
    return trained, extractor


EVALUATION_JSON_BYTES = 4 * 2**20  # an evaluation's JSON is a few KB per skipped file


def _is_evaluation_json(path: Path) -> bool:
    """Whether ``path`` holds an earlier evaluation's output (the only file --json replaces);
    a device, a pipe or a large file is never read to the end to find out."""
    import json

    from koala_lib import files

    try:
        value = json.loads(files.read_small(path, EVALUATION_JSON_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(value, dict) and {"rows", "protocol"} <= value.keys()


def run_evaluate(args) -> int:
    import json

    from koala_lib import files
    from koala_lib.data.images import MAX_IMAGE_SIZE
    from koala_lib.evaluate import METRIC_COLUMNS, evaluate_folder, table_markdown

    if not args.folder.is_dir():
        raise FileNotFoundError(f"{args.folder} is not a folder of photos.")
    if args.size is not None and (args.size <= 0 or args.size % 8 or args.size > MAX_IMAGE_SIZE):
        raise ValueError(f"--size must be a multiple of 8 from 8 to {MAX_IMAGE_SIZE}, got "
                         f"{args.size}.")
    if args.json and (args.json.exists() or args.json.is_symlink()) \
            and not _is_evaluation_json(args.json):
        raise ValueError(f"--json {args.json} exists and is not an earlier evaluation's "
                         "output (a regular file of at most "
                         f"{EVALUATION_JSON_BYTES // 2**20} MB): name a new file (only an "
                         "earlier evaluation's JSON is replaced).")
    if args.json and args.json.parent.exists() and not args.json.parent.is_dir():
        raise ValueError(f"--json {args.json}: {args.json.parent} is a file, not a folder.")
    if not args.model.is_file():
        raise FileNotFoundError(f"no trained model at {args.model} (--model): name a .keras "
                                "file saved by notebook 06, with its .json beside it.")
    _check_temperature(args.temperature)
    trained, extractor = _load_model(args.model, args.temperature)
    result = evaluate_folder(args.folder, trained, extractor, image_size=args.size,
                             progress=not args.quiet)
    print(table_markdown(result["rows"], ("prediction", *METRIC_COLUMNS)))
    print(f"{result['images']} colour photos of {args.folder} at {result['image_size']}x"
          f"{result['image_size']}; {len(result['skipped'])} files skipped; mean a,b of "
          f"{result['mean_ab_source']}.\nprotocol: {result['protocol']}")
    if args.json:  # whole or not at all: a full disk keeps an earlier result
        files.write_replacing(args.json, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def check_colorize_arguments(args) -> None:
    """What can be checked before the model loads (which takes seconds): the output folder,
    the inputs, the batch size, the smoothing."""
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file, not a folder: name a new folder (it is "
                         "created) or an existing one; nothing in it is overwritten.")
    if not any(path.exists() for path in args.inputs):
        raise FileNotFoundError(f"none of the inputs exists: {', '.join(map(str, args.inputs))}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if not 0 <= args.smoothing < 1:  # NaN included
        raise ValueError(f"--smoothing must be from 0 (off) up to, not including, 1; got "
                         f"{args.smoothing:g}.")
    if args.model is not None and not args.model.is_file():
        raise FileNotFoundError(f"no trained model at {args.model} (--model): name a .keras "
                                "file saved by notebook 06, with its .json beside it.")


def run_colorize(args) -> int:
    check_colorize_arguments(args)  # before the imports: Keras takes seconds to start
    _check_temperature(args.temperature)
    from koala_lib import colorize, course
    from koala_lib.colorize_video import is_video_file

    colorize.check_upsample(args.upsample)  # a missing OpenCV contrib: said before the model loads
    trained, extractor = _load_model(args.model or course.default_model_path(),
                                     args.temperature)
    videos = [path for path in args.inputs if path.is_file() and is_video_file(path)]
    others = [path for path in args.inputs if path not in videos]
    written = 0
    if others:
        report = colorize.colorize_files(others, args.out, trained, extractor,
                                         batch_size=args.batch_size, progress=not args.quiet,
                                         upsample=args.upsample)
        report.skipped = [(path, _video_in_folder(path, reason))
                          for path, reason in report.skipped]
        for source, target in report.written:
            print(f"wrote {target}  (from {source})")
        print(report.summary())
        written += len(report.written)
    if videos:
        written += _colorize_videos(videos, args, trained, extractor)
    return 0 if written else 1


def _video_in_folder(path: Path, reason: str) -> str:
    """Videos are colorized only when named: a folder of photos may hold hours of film."""
    from koala_lib.colorize_video import is_video_file

    if is_video_file(path) and reason.startswith("not an image file"):
        return "a video inside a folder: name the video file itself to colorize it"
    return reason


def _colorize_videos(videos: list[Path], args, trained, extractor) -> int:
    """Each video into ``<out>/<name>_colorized.mp4``; the number written."""
    import warnings

    from koala_lib.colorize_video import VideoWarning, colorize_video, free_video_name

    args.out.mkdir(parents=True, exist_ok=True)
    skipped = []
    for source in videos:
        target = free_video_name(args.out, source)
        try:
            with warnings.catch_warnings():  # said once, in the summary printed below
                warnings.simplefilter("ignore", VideoWarning)
                report = colorize_video(trained, extractor, source, target,
                                        batch_size=args.batch_size, upsample=args.upsample,
                                        smoothing=args.smoothing, progress=not args.quiet)
        except (OSError, ValueError) as error:  # this video only: the others still run
            skipped.append((source, str(error)))
            continue
        print(f"wrote {target}  (from {source})")
        print("  " + report.summary().replace("\n", "\n  "))
    print(f"colorized {len(videos) - len(skipped)} video(s), skipped {len(skipped)}")
    for source, reason in skipped:
        print(f"  skipped {source}: {reason}")
    return len(videos) - len(skipped)


def main(argv=None) -> int:
    # File names need not be UTF-8 (os.fsdecode keeps their bytes as surrogates): printed,
    # they are escaped instead of stopping the run.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    command = {"colorize": run_colorize, "evaluate": run_evaluate}[args.command]
    try:
        return command(args)
    except (OSError, ValueError) as error:  # FileNotFoundError, ConnectionError included
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ImportError as error:  # a missing package: what to install, not a traceback
        hint = "" if "pip install" in str(error) else (
            " (a package koala needs is missing or broken: reinstall koala with its "
            "dependencies, e.g. `pip install -e .[tf]` in the repository)")
        print(f"error: {error}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (files written so far are complete: none is half-written).",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
