"""Copy the notebooks `make course` executed (build/notebooks/) over the course notebooks, so
that the committed outputs are a real run's: `make notebooks` calls it after `make course`.

Only the outputs and execution counts are taken from the executed copy, cell by cell, and
only when its sources are the same as the course notebook's (papermill's timing metadata is
left out); a notebook edited since it ran is refused, never overwritten with stale outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def copy_outputs(executed: Path, course: Path) -> None:
    ran, target = (json.loads(path.read_text()) for path in (executed, course))
    ran_cells = [cell for cell in ran["cells"]
                 if "injected-parameters" not in cell.get("metadata", {}).get("tags", [])]
    sources = [[cell["cell_type"], "".join(cell["source"])] for cell in target["cells"]]
    if [[cell["cell_type"], "".join(cell["source"])] for cell in ran_cells] != sources:
        sys.exit(f"{course} changed since {executed} ran: run `make course` again.")
    for cell, done in zip(target["cells"], ran_cells, strict=True):
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = done["outputs"], done["execution_count"]
    course.write_text(json.dumps(target, indent=1, ensure_ascii=False) + "\n")


def main(executed_folder: str, course_folder: str) -> None:
    courses = sorted(Path(course_folder).glob("[0-9][0-9]_*.ipynb"))
    missing = [path.name for path in courses if not (Path(executed_folder) / path.name).is_file()]
    if missing:
        sys.exit(f"not executed yet: {', '.join(missing)} (run `make course`).")
    for course in courses:
        copy_outputs(Path(executed_folder) / course.name, course)
        print(f"outputs of {course.name} copied")


if __name__ == "__main__":
    main(*sys.argv[1:])
