"""The portrait data, from files to training batches: one package, one module a step.

================  ==========================================================================
module            job
================  ==========================================================================
``sources``       where portraits come from (KOALA_DATA_DIR, the download), sample portraits
``download``      the public portrait sets, fetched and checked against pinned checksums
``video``         training frames sampled from your own videos
``images``        the one image reader, the one suffix list, the one crop policy
``cleaning``      which files can train a colorizer, and why the others cannot
``split``         train / validation / test by person, never by image
``prepare``       cropped, Lab-packed, memory-mapped arrays, cached on disk
``cache``         the frozen classifier's embeddings, computed once
``feeder``        batches for ``model.fit``, seeded so that resumed runs line up
``portraits``     all of the above in one object: :class:`PortraitData`
================  ==========================================================================

The names most notebooks use are importable from ``koala_lib.data`` directly.
"""

from koala_lib.data.cleaning import CleaningReport, clean
from koala_lib.data.images import (
    IMAGE_SUFFIXES,
    decode_rgb,
    is_image_file,
    read_rgb,
    square_crop_resize,
)
from koala_lib.data.portraits import PortraitData, load_portraits
from koala_lib.data.sources import (
    NoPortraitsError,
    Portrait,
    black_and_white_files,
    list_images,
    portrait_dir,
    read_manifest,
    sample_portrait,
    sample_portraits,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "CleaningReport",
    "NoPortraitsError",
    "Portrait",
    "PortraitData",
    "black_and_white_files",
    "clean",
    "decode_rgb",
    "is_image_file",
    "list_images",
    "load_portraits",
    "portrait_dir",
    "read_manifest",
    "read_rgb",
    "sample_portrait",
    "sample_portraits",
    "square_crop_resize",
]
