"""The environment: variables read in one place, the project's folders."""

from __future__ import annotations

from koala_lib import environment


def test_project_root_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "koala_lib").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert environment.project_root(tmp_path / "notebooks") == tmp_path
