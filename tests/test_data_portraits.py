"""PortraitData: cleaned, split by person, prepared and embedded."""

from __future__ import annotations

import pytest

from koala_lib.data import load_portraits


def test_data_is_split_by_person_and_embedded(ci_data, mobilenet):
    sizes = {name: len(indices) for name, indices in ci_data.splits.items()}
    assert sum(sizes.values()) == len(ci_data.prepared) and min(sizes.values()) > 0
    assert ci_data.embeddings.shape == (len(ci_data.prepared), 1000)
    assert set(ci_data.sources) == {"uk_parliament", "us_congress"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_portraits(mobilenet, ci_data.folder / "no_such_folder", image_size=32)
