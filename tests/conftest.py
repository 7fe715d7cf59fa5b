"""Shared fixtures: the real portrait folder, test images, extractors, a small real data set,
and outputs kept out of tracked files."""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import re
import resource
import struct
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from standins.lfw_layout import LFW_PERSONS, fake_lfw, lfw_photo  # noqa: F401 (shared)

from koala_lib import course, features
from koala_lib.data import load_portraits

ROOT = Path(__file__).resolve().parents[1]
SHARED_PORTRAITS = ROOT.parent / "shared" / "data" / "portraits"


def portraits_dir() -> Path | None:
    value = os.environ.get("KOALA_DATA_DIR")
    if value:
        return Path(value)
    return SHARED_PORTRAITS if SHARED_PORTRAITS.is_dir() else None


def refuse_links(monkeypatch) -> None:
    """Symbolic and hard links fail as on Google Drive's mount in Colab (errno 95)."""
    def refused(source, target, *args, **kwargs):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(target))

    monkeypatch.setattr(os, "symlink", refused)
    monkeypatch.setattr(os, "link", refused)


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Files this process writes may grow to ``limit`` bytes (a full disk, ``ulimit -f``):
    past it a write fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture(scope="session")
def portrait_folder() -> Path:
    """The real portrait set; tests that need it skip (with the reason) where it is absent."""
    folder = portraits_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("no portrait folder: set KOALA_DATA_DIR (e.g. ../shared/data/portraits)")
    return folder


@pytest.fixture(autouse=True)
def _outputs_in_tmp(tmp_path, monkeypatch):
    # Unit tests write figures and results into their own temporary folder.
    monkeypatch.setenv("KOALA_FIG_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("KOALA_BUILD_DIR", str(tmp_path / "build"))


def photo_file(path, seed, height=90, width=70):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, width)[None, :]
    image[..., 2] = np.linspace(255, 0, height)[:, None]
    image[..., 1] = rng.integers(0, 255)
    Image.fromarray(image).save(path)
    return image


def png16_rgb(path, rgb16):
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot)."""
    height, width, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def colourful(height=96, width=80, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = (200, 40, 40)
    image[height // 2 :] = (30, 60, 190)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def messy_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    colour = colourful()
    Image.fromarray(colour).save(folder / "good.jpg", quality=95)
    (folder / "good_copy.jpg").write_bytes((folder / "good.jpg").read_bytes())
    Image.fromarray(colour).save(folder / "nested" / "good.png")
    (folder / "notes.txt").write_text("not a photo")
    good = (folder / "good.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(colour.mean(-1).astype(np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.repeat(colour.mean(-1, keepdims=True), 3, -1).astype(np.uint8)).save(
        folder / "gray_as_rgb.jpg")
    rgba = np.concatenate([colour, np.full((*colour.shape[:2], 1), 255, np.uint8)], -1)
    rgba[:10, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(colour).convert("P").save(folder / "palette.png")
    Image.fromarray(colour).convert("CMYK").save(folder / "cmyk.jpg")
    png16_rgb(folder / "colour16.png", colour.astype(np.uint16) * 257)
    Image.fromarray((colour.mean(-1) * 257).astype(np.uint16)).save(folder / "gray16.png")
    Image.fromarray(colour[:10, :10]).save(folder / "tiny.png")
    return folder


@pytest.fixture(scope="session")
def mobilenet():
    """torchvision's ImageNet MobileNetV2, converted (fetched and cached on first use)."""
    return features.FeatureExtractor("mobilenet_v2", "torchvision")


@pytest.fixture(scope="session")
def random_mobilenet():
    keras.utils.set_random_seed(0)
    return features.FeatureExtractor("mobilenet_v2", None)


@pytest.fixture(scope="session")
def extractor(mobilenet):
    return mobilenet


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory, mobilenet):
    """An untrained 32x32 colorizer saved with its metadata, on MobileNetV2 embeddings."""
    from koala_lib.model import build_colorizer
    from koala_lib.trained_model import save_trained

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "colorizer.keras"
    return save_trained(build_colorizer(32), path, mobilenet, image_size=32,
                        data="a test model", metrics={"psnr": 20.0})


CI = course.SETTINGS["ci"]


@pytest.fixture(scope="session")
def ci_data(portrait_folder, mobilenet):
    """The ci profile's real portraits at 32x32 with MobileNetV2 embeddings."""
    return load_portraits(mobilenet, portrait_folder, image_size=CI.image_size,
                          images=CI.images, seed=0, progress=False)


def small_config(**changes):
    base = CI.train_config(epochs=3, snapshot_images=2)
    return replace(base, **changes)


def assert_same_8bit_image(found, expected, max_fraction: float = 1e-3) -> None:
    """Two 8-bit images equal up to rounding. Floats from another batch, thread or kernel
    (oneDNN or Eigen, strips or one pass) differ in their last bits, and a value on a
    rounding boundary then moves one level: never more, and only at a few values."""
    found, expected = np.asarray(found), np.asarray(expected)
    assert found.shape == expected.shape and found.dtype == expected.dtype == np.uint8
    worst = int(np.abs(found.astype(int) - expected).max())
    differing = float((found != expected).mean())
    assert worst <= 1, f"values differ by up to {worst} levels, more than rounding"
    assert differing < max_fraction, f"{differing:.2%} of the values differ, more than rounding"


# --- a local mirror of the public portrait hosts --------------------------------------------


class PortraitMirror:
    """Serves the shared portraits at the public hosts' paths on 127.0.0.1, so that the real
    download code runs end to end (``KOALA_PORTRAIT_MIRROR``). ``missing`` names hosts that
    answer 404, as an unreachable source would fail."""

    ROUTES = {  # URL path pattern -> (host, folders that may hold the file)
        re.compile(r"^/unitedstates/images/gh-pages/congress/225x275/(\w+)\.jpg$"):
            ("github", ("us_congress", "us_congress_grayscale")),
        re.compile(r"^/api/Members/(\w+)/Thumbnail$"): ("parliament", ("uk_parliament",)),
    }

    def __init__(self, folder: Path):
        self.folder, self.missing, self.requests = folder, set(), 0
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server name)
                mirror.requests += 1
                path = mirror.file_for(self.path)
                if path is None:
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def file_for(self, url_path: str) -> Path | None:
        for pattern, (host, folders) in self.ROUTES.items():
            match = pattern.match(url_path)
            if match and host not in self.missing:
                for folder in folders:
                    path = self.folder / folder / f"{match.group(1)}.jpg"
                    if path.is_file():
                        return path
        return None


@pytest.fixture(scope="session")
def portrait_mirror(portrait_folder):
    mirror = PortraitMirror(portrait_folder)
    yield mirror
    mirror.server.shutdown()
