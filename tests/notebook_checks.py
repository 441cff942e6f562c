"""Checks on committed chapter notebooks (the book's "did it really run" rules)."""

from __future__ import annotations

import re

MACHINE_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/[\w.-]+/|/Users/[\w.-]+/|[A-Z]:\\\\Users)")


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def execution_problems(nb: dict) -> list[str]:
    """Code cells that never ran, error outputs, and runs that were not one top-to-bottom pass."""
    problems = []
    counts = []
    for i, cell in enumerate(code_cells(nb)):
        if cell.get("execution_count") is None:
            problems.append(f"code cell {i} never ran")
        else:
            counts.append(cell["execution_count"])
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"code cell {i} has an error output: {out.get('ename')}: {out.get('evalue')}")
    if counts != sorted(counts) or len(set(counts)) != len(counts):
        problems.append(f"execution counts {counts} are not one top-to-bottom run")
    return problems


def output_problems(nb: dict) -> list[str]:
    """Outputs that show a machine-specific path."""
    problems = []
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(
                "".join(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
            match = MACHINE_PATH.search(text)
            if match:
                problems.append(f"code cell {i} output shows a machine path ({match.group(0)}...)")
    return problems


def skeleton_problems(nb: dict, repo_url: str) -> list[str]:
    """The chapter skeleton: title, Colab cell, parameters cell, provenance/results at the end."""
    problems = []
    first = nb["cells"][0]
    if first["cell_type"] != "markdown" or not source(first).startswith("# "):
        problems.append("the first cell is not a markdown title ('# ...')")
    cells = code_cells(nb)
    if not cells or "google.colab" not in source(cells[0]) or repo_url not in source(cells[0]):
        problems.append(f"the first code cell is not the Colab install cell for {repo_url}")
    params = [c for c in cells if "parameters" in tags(c)]
    if len(params) != 1:
        problems.append(f"expected one cell tagged 'parameters', found {len(params)}")
    elif not all(re.search(rf"^{name}\s*=", source(params[0]), re.M) for name in ("profile", "seed")):
        problems.append("the parameters cell must set profile and seed")
    elif not re.search(r"""^profile\s*=\s*["']auto["']""", source(params[0]), re.M):
        problems.append('the parameters cell must default to profile = "auto"')
    elif cells.index(params[0]) != 1:
        problems.append("the parameters cell must come right after the Colab cell")
    if not cells or not re.search(r"\.finish\(|results\.save\(", source(cells[-1])):
        problems.append("the last code cell must write the results (run.finish or results.save)")
    return problems


def comparable_code(nb: dict) -> list[str]:
    """The code of a notebook, without papermill's injected parameters."""
    return [source(c) for c in code_cells(nb) if "injected-parameters" not in tags(c)]


def injected_profile(nb: dict) -> str | None:
    for cell in code_cells(nb):
        if "injected-parameters" in tags(cell):
            match = re.search(r"""^profile\s*=\s*["'](\w+)["']""", source(cell), re.M)
            if match:
                return match.group(1)
    return None
