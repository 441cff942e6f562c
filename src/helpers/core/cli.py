"""The book's command line: ``python -m helpers <command>``.

  run CH --profile P   execute chapter CH (e.g. 01) with papermill at profile P; the chapter is
                       replaced only when the run finishes (partial runs stay in _build/runs/P/)
  refresh CH           rebuild CH's smoke-profile regression copy in tests/notebooks/
                       and its toleranced metrics reference (NN.smoke-reference.json)
  dryrun CH            execute CH at the gpu profile's settings with every loop cut to one or two
                       steps, on the CPU, into _build/runs/dryrun/ (the chapter is never touched)
  memory [CH ...]      the gpu profile's estimated GPU memory per training step, against a Colab T4
  scoreboard           regenerate book/scoreboard.md and book/status.md from results/
  screenshots          render built pages to PNG with headless Chromium (after the site build) and
                       list the code or output lines clipped at a 1280 px window
  data pack            pack the offline datasets into the book-sized archives
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from helpers.core import cache, profiles, regression
from helpers.core.browser import clipped_lines, find_chromium, screenshot
from helpers.core.results import project_root, results_dir
from helpers.core.scoreboard import chapter_notebooks, write_pages

SCREENSHOT_PAGES = ("book/intro.html", "chapters/00_quickstart.html")


def _root() -> Path:
    root = project_root()
    if root is None:
        sys.exit("run this inside the book's checkout (the folder with _config.yml and chapters/)")
    return root


def _notebook(root: Path, chapter: str) -> Path:
    notebooks = chapter_notebooks(root / "chapters")
    key = chapter.zfill(2)
    if key not in notebooks:
        sys.exit(f"no chapter {chapter!r}; chapters are: {', '.join(sorted(notebooks))}")
    return notebooks[key]


def execute(source: Path, target: Path, profile: str, cwd: Path, *, figures: bool = True) -> None:
    """Run a chapter notebook with papermill, injecting ``profile``.

    ``figures=True`` (a published chapter) gives the kernel matplotlib's inline backend even when
    the shell sets ``MPLBACKEND=Agg`` (as CI does), which would silently drop every figure;
    ``figures=False`` (a regression copy) forces Agg, so the copies carry no images.
    """
    import papermill

    profiles.get(profile)
    # Progress bars are for people watching a run; the executed notebook keeps only results.
    os.environ.setdefault("TQDM_DISABLE", "1")
    backend = os.environ.pop("MPLBACKEND", None)
    if not figures:
        os.environ["MPLBACKEND"] = "Agg"
    try:
        papermill.execute_notebook(
            str(source), str(target), parameters={"profile": profile}, cwd=str(cwd),
            kernel_name="python3", progress_bar=False, log_output=True,
        )
    finally:
        os.environ.pop("MPLBACKEND", None)
        if backend is not None:
            os.environ["MPLBACKEND"] = backend


def strip_injected_parameters(path: Path) -> None:
    """Drop papermill's injected-parameters cell from an executed chapter.

    The chapter keeps its own ``parameters`` cell (``profile = "auto"``), so a reader who opens it
    in Colab and picks a profile is not overruled by a hidden cell; the profile the outputs came
    from stays in the notebook's metadata (``papermill.parameters``) and in its provenance cell.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nbformat.write(nb, path)


def _run_to_completion(root: Path, notebook: Path, profile: str, cwd: Path, *, figures: bool = True) -> Path:
    """Execute ``notebook`` into ``_build/runs/<profile>/`` and return that copy; exit if it fails.

    The caller moves the copy into place, so an interrupted or failed run leaves the committed
    notebook as it was (and its partial copy in ``_build/runs/`` to look at).
    """
    running = root / "_build" / "runs" / profile / notebook.name
    running.parent.mkdir(parents=True, exist_ok=True)
    try:
        execute(notebook, running, profile, cwd, figures=figures)
    except Exception:
        sys.exit(f"the run failed; its partial notebook is {running.relative_to(root)} (the chapter is unchanged)")
    return running


def cmd_run(args: argparse.Namespace) -> None:
    root = _root()
    notebook = _notebook(root, args.chapter)
    target = Path(args.output) if args.output else notebook
    running = _run_to_completion(root, notebook, args.profile, notebook.parent)
    strip_injected_parameters(running)
    shutil.move(running, target)
    write_pages(root)
    print(f"executed {notebook.relative_to(root)} at profile {args.profile} -> {target}")


def cmd_refresh(args: argparse.Namespace) -> None:
    root = _root()
    notebook = _notebook(root, args.chapter)
    target = root / "tests" / "notebooks" / notebook.name
    shutil.move(_run_to_completion(root, notebook, "smoke", target.parent, figures=False), target)
    chapter = notebook.name.split("_")[0]
    written = results_dir() / f"{chapter}.smoke.json"
    reference = regression.reference_path(target.parent, chapter)
    stored = regression.write_reference(reference, chapter, json.loads(written.read_text())["metrics"])
    print(f"refreshed {target.relative_to(root)} (profile smoke) and "
          f"{reference.relative_to(root)} ({len(stored['metrics'])} metrics)")


def _study(chapter: str):
    """The study module of ``chapter`` (``helpers.studies.chNN_*``), or None for a chapter without one."""
    import importlib

    import helpers.studies

    folder = Path(helpers.studies.__file__).parent
    found = sorted(folder.glob(f"ch{chapter.zfill(2)}_*.py"))
    return importlib.import_module(f"helpers.studies.{found[0].stem}") if found else None


def print_gpu_memory(chapter: str) -> None:
    """The gpu profile's estimated GPU memory per training step of ``chapter``, against a Colab T4."""
    from helpers.core import memory

    study = _study(chapter)
    if study is None:
        return
    steps = study.gpu_memory(study.settings("gpu"))
    print(f"chapter {chapter.zfill(2)}: estimated GPU memory at the gpu profile (GiB; helpers.core.memory)")
    print(memory.table(steps).to_string())


def cmd_memory(args: argparse.Namespace) -> None:
    root = _root()
    for chapter in args.chapters or sorted(chapter_notebooks(root / "chapters")):
        print_gpu_memory(chapter)


def cmd_dryrun(args: argparse.Namespace) -> None:
    root = _root()
    notebook = _notebook(root, args.chapter)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dryrun-artifacts-") as artifacts:
        os.environ[cache.ENV_ARTIFACTS] = artifacts  # train everything afresh, keep nothing
        try:
            running = _run_to_completion(root, notebook, profiles.DRYRUN, notebook.parent, figures=False)
        finally:
            del os.environ[cache.ENV_ARTIFACTS]
    print(f"dry run of {notebook.relative_to(root)} at the gpu profile's settings passed in "
          f"{time.monotonic() - started:.0f} s -> {running.relative_to(root)}")
    print_gpu_memory(args.chapter)


def cmd_scoreboard(args: argparse.Namespace) -> None:
    for page in write_pages(_root()):
        print(f"wrote {page}")


def cmd_screenshots(args: argparse.Namespace) -> None:
    root = _root()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no Chromium found: on Debian/Ubuntu run `apt-get install chromium`")
    html_root = root / "_build" / "html"
    out = root / "screenshots"
    out.mkdir(exist_ok=True)
    for page in SCREENSHOT_PAGES:
        html = html_root / page
        if not html.is_file():
            sys.exit(f"{html} is missing: build the site first (make book)")
        png = out / (Path(page).stem + ".png")
        screenshot(html, png, chromium)
        print(f"wrote {png.relative_to(root)}")
    pages = sorted((html_root / "chapters").glob("*.html")) + sorted((html_root / "book").glob("*.html"))
    for name, lines in clipped_lines(pages, chromium).items():
        print(f"{name}: " + (f"{len(lines)} line(s) clipped at 1280 px, e.g. {lines[0][:60]!r}" if lines else "nothing clipped"))


def cmd_data_pack(args: argparse.Namespace) -> None:
    from helpers.data import archives

    source = args.source or os.environ.get("BOOK_DATA_DIR")
    if not source:
        sys.exit("name the offline datasets folder: --source DIR (or BOOK_DATA_DIR)")
    names = tuple(args.names or archives.DATASETS)
    packed = archives.pack_all(Path(source), Path(args.out), names)
    for a in packed:
        print(f"{a.path}  {a.size:>11,} bytes  {a.files:>5} files  sha256 {a.sha256}")
    print(f"total {sum(a.size for a in packed):,} bytes in {len(packed)} archives")
    if args.write_registry:
        repository = archives.repository_url(_root() / "_config.yml")
        print(f"wrote {archives.write_registry(packed, repository)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a chapter in place at a profile")
    run.add_argument("chapter", help="chapter number, e.g. 01")
    run.add_argument("--profile", default="cpu", choices=[p for p in profiles.names() if p != profiles.DRYRUN])
    run.add_argument("--output", help="write the executed notebook here instead of in place")
    run.set_defaults(func=cmd_run)
    refresh = sub.add_parser("refresh", help="rebuild a chapter's smoke regression copy")
    refresh.add_argument("chapter")
    refresh.set_defaults(func=cmd_refresh)
    dryrun = sub.add_parser("dryrun", help="check a chapter's gpu settings on the CPU, every loop cut short")
    dryrun.add_argument("chapter")
    dryrun.set_defaults(func=cmd_dryrun)
    memory = sub.add_parser("memory", help="estimated GPU memory of the gpu profile, against a 15 GB Colab T4")
    memory.add_argument("chapters", nargs="*", help="chapter numbers (default: all)")
    memory.set_defaults(func=cmd_memory)
    sub.add_parser("scoreboard", help="regenerate the scoreboard and status pages").set_defaults(func=cmd_scoreboard)
    sub.add_parser("screenshots", help="render built pages to PNG").set_defaults(func=cmd_screenshots)
    data = sub.add_parser("data", help="the book-sized data archives")
    actions = data.add_subparsers(dest="action", required=True)
    pack = actions.add_parser("pack", help="pack dataset folders into .tar.gz")
    pack.add_argument("names", nargs="*", help="datasets to pack (default: all)")
    pack.add_argument("--source", help="offline datasets (default: $BOOK_DATA_DIR)")
    pack.add_argument("--out", default="_build/data", help="where the archives go")
    pack.add_argument("--write-registry", action="store_true",
                      help="record sha256 and size in helpers/data/book_archives.py")
    pack.set_defaults(func=cmd_data_pack)
    args = parser.parse_args(argv)
    args.func(args)
