"""Write lab notebooks as plain text, and read them back.

The instructor source of a lab is ``solutions/<lab>/<lab>.ipynb`` with
nbgrader's cell metadata. Editing that JSON by hand is error-prone, so this
module converts between the notebook and a plain-text form in which each cell
starts with a marker line::

    #%% md                                   a markdown cell (read-only prose)
    #%% code                                 an ordinary code cell
    #%% solution id=top_k_filter             code the learner writes (BEGIN/END SOLUTION inside)
    #%% solution id=top_k_filter equivalents=transformers.TopKLogitsWarper
                                             ... naming the ready-made versions it may not hand its
                                             work to (comma-separated dotted paths; autograder.grading.judge)
    #%% test id=test_top_k_filter points=2   an autograded test cell (locked; may hold hidden tests)
    #%% written id=written_decoding points=2 a manually graded markdown answer
    #%% locked id=setup                      a code cell nbgrader keeps read-only
    #%% code grading=skip                    a long run no graded test needs (training sweeps, frontier runs,
                                             their plots): not run while grading, said so in the feedback

Everything after the marker line, up to the next marker, is the cell's source
verbatim. Usage::

    python -m autograder.course.authoring build lab.txt solutions/lab1_x/lab1_x.ipynb
    python -m autograder.course.authoring export solutions/lab1_x/lab1_x.ipynb > lab.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

MARKER = re.compile(r"^#%%\s+(md|code|solution|test|written|locked)\b(.*)$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _nbgrader(kind: str, opts: dict[str, str]) -> dict | None:
    if kind in ("md", "code"):
        return None
    grade_id = opts.get("id")
    if not grade_id:
        raise ValueError(f"a '{kind}' cell needs id=...")
    meta = {"grade": False, "solution": False, "locked": False, "grade_id": grade_id, "schema_version": 3}
    if kind == "solution":
        meta["solution"] = True
    elif kind == "test":
        meta.update(grade=True, locked=True, points=float(opts.get("points", 1)))
    elif kind == "written":
        meta.update(grade=True, solution=True, points=float(opts.get("points", 1)))
    elif kind == "locked":
        meta["locked"] = True
    return meta


def text_to_notebook(text: str) -> nbformat.NotebookNode:
    """Parse the plain-text form into a notebook with nbgrader metadata."""
    cells: list[tuple[str, dict[str, str], list[str]]] = []
    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            opts = dict(kv.split("=", 1) for kv in m.group(2).split())
            cells.append((m.group(1), opts, []))
        elif cells:
            cells[-1][2].append(line)
        elif line.strip():
            raise ValueError(f"text before the first '#%%' marker: {line!r}")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    seen: set[str] = set()
    for kind, opts, lines in cells:
        source = "\n".join(lines).strip("\n")
        markdown = kind in ("md", "written")
        cell = nbformat.v4.new_markdown_cell(source) if markdown else nbformat.v4.new_code_cell(source)
        meta = _nbgrader(kind, opts)
        if opts.get("equivalents"):
            if kind != "solution":
                raise ValueError("equivalents=... belongs on a solution cell")
            cell.metadata["rlhf_course"] = {"equivalents": [p for p in opts["equivalents"].split(",") if p]}
        if opts.get("grading"):
            if kind != "code" or opts["grading"] != "skip":
                raise ValueError("grading=skip belongs on an ordinary code cell (a long run no graded test needs)")
            cell.metadata["rlhf_course"] = {"grading": "skip"}
        if meta is not None:
            if meta["grade_id"] in seen:
                raise ValueError(f"duplicate cell id {meta['grade_id']!r}")
            seen.add(meta["grade_id"])
            cell.metadata["nbgrader"] = meta
        cell.pop("id", None)
        cells_out = nb.cells
        cells_out.append(cell)
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):  # stable, readable cell ids keep diffs small
        meta = cell.metadata.get("nbgrader")
        cell["id"] = (meta["grade_id"] if meta else f"cell-{i:03d}").replace("_", "-")[:64]
    return nb


def notebook_to_text(nb: nbformat.NotebookNode) -> str:
    """The inverse of :func:`text_to_notebook` (outputs are dropped)."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            head = "#%% md" if cell.cell_type == "markdown" else "#%% code"
            if cell.metadata.get("rlhf_course", {}).get("grading") == "skip":
                head += " grading=skip"
        else:
            gid = meta["grade_id"]
            if meta.get("grade") and meta.get("solution"):
                head = f"#%% written id={gid} points={meta.get('points', 0):g}"
            elif meta.get("grade"):
                head = f"#%% test id={gid} points={meta.get('points', 0):g}"
            elif meta.get("solution"):
                head = f"#%% solution id={gid}"
                paths = cell.metadata.get("rlhf_course", {}).get("equivalents")
                if paths:
                    head += " equivalents=" + ",".join(paths)
            else:
                head = f"#%% locked id={gid}"
        out.append(head + "\n" + cell.source.rstrip("\n") + "\n")
    return "\n".join(out)


def build(text_path: str, nb_path: str) -> None:
    nb = text_to_notebook(Path(text_path).read_text())
    Path(nb_path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, nb_path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "build":
        build(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "export":
        sys.stdout.write(notebook_to_text(nbformat.read(argv[1], as_version=4)))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
