"""The environment: variables read in one place, the project's folders."""

from __future__ import annotations

import pytest

from koala_lib import environment


def test_project_root_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "koala_lib").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert environment.project_root(tmp_path / "notebooks") == tmp_path


@pytest.mark.parametrize("value, ci", [("", False), ("0", False), ("false", False),
                                       ("No", False), ("true", True), ("1", True)])
def test_ci_is_read_the_same_way_everywhere(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    monkeypatch.delenv("KOALA_PROFILE", raising=False)
    assert environment.current().ci is ci
    assert environment.current().batch_run is ci


def test_a_ci_profile_run_is_a_batch_run_and_folders_follow_the_variables(monkeypatch,
                                                                          tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("KOALA_PROFILE", "CI")
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    assert environment.current().batch_run
    assert environment.cache_dir("weights") == tmp_path / "cache" / "weights"
    assert (tmp_path / "cache" / "weights").is_dir()
    assert environment.figures_dir() == tmp_path / "figures"  # conftest points it there
