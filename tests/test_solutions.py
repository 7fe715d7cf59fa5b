"""Every course notebook ends with two to four exercises, each solved in its solutions notebook.

The exercises are the course notebook's last cell, a markdown cell that starts with
``## Exercises`` and numbers them ``1. **Title.** ...``. The solutions live in
``notebooks/solutions/NN_<stem>_solutions.ipynb``: one section per exercise, headed
``## Exercise N: Title`` with the same title. CI executes the solutions notebooks with the
others (nbval on ``notebooks/``, profile ``ci``), and each solution asserts what it claims;
this file checks that the two sides stay in step and that the solutions notebooks start
like the course notebooks and carry no outputs.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = ROOT / "notebooks" / "solutions"
EXERCISE_ITEM = re.compile(r"^(\d+)\. \*\*(.+?)\.\*\*", re.MULTILINE)
EXERCISE_HEADING = re.compile(r"^## Exercise (\d+): (.+)$", re.MULTILINE)


def cells(path):
    return [(cell["cell_type"], "".join(cell["source"]), cell)
            for cell in json.loads(path.read_text())["cells"]]


def solutions_for(notebook):
    return SOLUTIONS / f"{notebook.stem}_solutions.ipynb"


def exercise_titles(notebook) -> list[str]:
    """The titles of the exercises in the course notebook's last markdown cell."""
    markdown = [source for kind, source, _ in cells(notebook) if kind == "markdown"]
    last = markdown[-1]
    assert last.startswith("## Exercises"), (
        f"{notebook.name}: the last markdown cell should be the exercises ('## Exercises'), "
        f"not {last.splitlines()[0]!r}")
    items = EXERCISE_ITEM.findall(last)
    assert [int(number) for number, _ in items] == list(range(1, len(items) + 1)), notebook.name
    assert solutions_for(notebook).name in last, f"{notebook.name}: link the solutions"
    return [title for _, title in items]


def solution_titles(solutions) -> list[str]:
    headings = [EXERCISE_HEADING.match(source.splitlines()[0])
                for kind, source, _ in cells(solutions) if kind == "markdown"]
    found = [match for match in headings if match]
    assert [int(match[1]) for match in found] == list(range(1, len(found) + 1)), solutions.name
    return [match[2] for match in found]


def test_there_is_a_solutions_notebook_for_every_course_notebook():
    assert len(NOTEBOOKS) == 10
    expected = {solutions_for(notebook).name for notebook in NOTEBOOKS}
    assert {path.name for path in SOLUTIONS.glob("*.ipynb")} == expected


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_solutions_notebook_starts_like_its_course_notebook(notebook):
    solutions = solutions_for(notebook)
    found = cells(solutions)
    course_code = [source for kind, source, _ in cells(notebook) if kind == "code"]
    code = [(source, cell) for kind, source, cell in found if kind == "code"]
    assert found[0][1].startswith(f"# {notebook.stem[:2]} · ") and "solutions" in found[0][1]
    # The setup cell: Colab installs koala_lib, the environment is checked.
    assert code[0][0].split("from koala_lib.course")[0] == course_code[0].split(
        "from koala_lib.course")[0]
    assert "ENV = check_environment(" in code[0][0]
    # Then the parameters (papermill's tag), with the profile, and course.setup.
    assert code[1][1]["metadata"].get("tags") == ["parameters"]
    assert code[1][0].startswith('PROFILE = "auto"')
    assert "settings = course.setup(PROFILE, drive=DRIVE" in code[2][0]
    assert json.loads(solutions.read_text())["metadata"] == json.loads(
        notebook.read_text())["metadata"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_solutions_have_two_to_four_checked_exercises_and_no_outputs(notebook):
    solutions = solutions_for(notebook)
    titles = solution_titles(solutions)
    assert 2 <= len(titles) <= 4, solutions.name
    sections = "".join(f"\n{kind}\n{source}" for kind, source, _ in cells(solutions)).split(
        "## Exercise ")[1:]
    for number, section in enumerate(sections, start=1):
        assert re.search(r"\bassert(\s|_\w+\()", section), (
            f"{solutions.name}: exercise {number} checks nothing")
        assert "**Answer.**" in section, f"{solutions.name}: exercise {number} has no answer"
    for kind, source, cell in cells(solutions):
        assert "NBVAL_CHECK_OUTPUT" not in source  # their outputs are not committed
        if kind == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, solutions.name


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_course_notebook_ends_with_the_exercises_its_solutions_solve(notebook):
    titles = exercise_titles(notebook)
    assert 2 <= len(titles) <= 4, notebook.name
    assert titles == solution_titles(solutions_for(notebook)), notebook.name
