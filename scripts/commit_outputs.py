"""Copy the notebooks `make course` executed (build/notebooks/) over the course notebooks, so
that the committed outputs are a real run's: `make notebooks` calls it after `make course`.

Only the outputs and execution counts are taken from the executed copy, cell by cell, and
only when its code cells are the same as the course notebook's (papermill's timing metadata
is left out); a notebook whose code changed since it ran is refused, never given stale
outputs (its prose may have been edited meanwhile: it is kept).
Progress bars are kept as Jupyter shows them at the end: a cell's consecutive stream
outputs are joined and their carriage returns and backspaces applied, so a Keras progress
bar is its last state, not every update. TensorFlow's C++ start-up log lines on stderr
(CUDA probing on a machine without a GPU, CPU instruction notes), which no setting silences
before TensorFlow has started its logging, are left out.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# "I0000 00:00:1795832476.470092   24753 port.cc:153] ..." and the lines that go with them.
TENSORFLOW_STARTUP = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow)")


def terminal_text(text: str) -> str:
    """``text`` as Jupyter shows it: a "\r" followed by more of the line starts the line
    over (a progress bar's update), "\b" removes the character before it; "\r\n" and a
    "\r" that ends the text leave the line as it is."""
    lines, line, over = [], [], False
    for char in re.sub(r"\r+\n", "\n", text):
        if char == "\n":
            lines.append("".join(line))
            line, over = [], False
        elif char == "\r":
            over = True
        elif char == "\b":
            line = line[:-1]
        else:
            if over:
                line, over = [], False
            line.append(char)
    return "\n".join([*lines, "".join(line)])


def tidy_streams(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of the same name joined, as :func:`terminal_text` shows."""
    tidy = []
    for output in outputs:
        if (output.get("output_type") == "stream" and tidy
                and tidy[-1].get("output_type") == "stream"
                and tidy[-1]["name"] == output["name"]):
            tidy[-1]["text"] += "".join(output["text"])
        else:
            tidy.append(dict(output, text="".join(output["text"]))
                        if output.get("output_type") == "stream" else output)
    for output in tidy:
        if output.get("output_type") == "stream":
            lines = terminal_text(output["text"]).splitlines(keepends=True)
            if output["name"] == "stderr":
                lines = [line for line in lines if not TENSORFLOW_STARTUP.match(line)]
            output["text"] = lines
    return [output for output in tidy if output.get("output_type") != "stream"
            or "".join(output["text"]).strip()]


def copy_outputs(executed: Path, course: Path) -> None:
    ran, target = (json.loads(path.read_text()) for path in (executed, course))
    ran_cells = [cell for cell in ran["cells"]
                 if "injected-parameters" not in cell.get("metadata", {}).get("tags", [])]
    def code(cells):  # prose may be edited after a run; code may not
        return [(cell["cell_type"], "".join(cell["source"]) if cell["cell_type"] == "code"
                 else "") for cell in cells]

    if code(ran_cells) != code(target["cells"]):
        sys.exit(f"{course}'s code changed since {executed} ran: run `make course` again.")
    for cell, done in zip(target["cells"], ran_cells, strict=True):
        if cell["cell_type"] == "code":
            cell["outputs"] = tidy_streams(done["outputs"])
            cell["execution_count"] = done["execution_count"]
    course.write_text(json.dumps(target, indent=1, ensure_ascii=False) + "\n")


def main(executed_folder: str, course_folder: str, *names: str) -> None:
    """Every course notebook, or only those ``names`` (file names)."""
    courses = sorted(path for path in Path(course_folder).glob("[0-9][0-9]_*.ipynb")
                     if not names or path.name in names)
    missing = [path.name for path in courses if not (Path(executed_folder) / path.name).is_file()]
    if missing:
        sys.exit(f"not executed yet: {', '.join(missing)} (run `make course`).")
    for course in courses:
        copy_outputs(Path(executed_folder) / course.name, course)
        print(f"outputs of {course.name} copied")


if __name__ == "__main__":
    main(*sys.argv[1:])
