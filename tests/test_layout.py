"""The package's shape: every module is on the map, every chapter has one study module with the
same entry points, and the README names every folder."""

import importlib
import re

import pytest
from conftest import ROOT

import helpers

PACKAGE = ROOT / "src" / "helpers"
MAPPED = ("core", "data", "codecs", "methods", "models")
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("0[1-9]_*.ipynb"))
STUDIES = sorted(p.stem for p in (PACKAGE / "studies").glob("ch*.py"))


def modules(folder: str) -> list[str]:
    return sorted(p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("folder", MAPPED)
def test_every_module_is_on_the_package_map(folder):
    section = re.search(rf"^    {folder}/(.*?)(?=^    \w+/|\Z)", helpers.__doc__, re.S | re.M)
    assert section, f"helpers/__init__.py's map has no {folder}/ entry"
    missing = [m for m in modules(folder) if not re.search(rf"\b{m}\b", section.group(1))]
    assert not missing, f"helpers/__init__.py's map does not name {folder}/{missing}"


def test_no_module_sits_outside_a_folder():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_one_study_module_and_one_test_file_per_chapter():
    assert [s[2:4] for s in STUDIES] == [c[:2] for c in CHAPTERS]
    for study in STUDIES:
        assert re.fullmatch(r"ch\d\d_[a-z0-9_]+", study)
        assert list((ROOT / "tests").glob(f"test_{study}*.py")), f"no tests/test_{study}.py"


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_has_the_same_entry_points(study):
    module = importlib.import_module(f"helpers.studies.{study}")
    assert set(module.SETTINGS) == {"smoke", "cpu", "gpu", "dryrun"}
    for profile in module.SETTINGS:
        assert isinstance(module.settings(profile), module.Settings)
    assert callable(module.gpu_memory)  # python -m helpers memory / dryrun print its estimate


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapters_call_their_study_module_as_study(chapter):
    text = (ROOT / "chapters" / f"{chapter}.ipynb").read_text()
    assert f"from helpers.studies import ch{chapter[:2]}_" in text and " as study" in text
    assert re.search(r"cfg = study\.settings\(", text), f"{chapter}: settings are read as `cfg = study.settings(...)`"


def test_the_readme_names_every_folder():
    readme = (ROOT / "README.md").read_text()
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_"))
    missing = [f for f in folders if f"src/helpers/{f}/" not in readme]
    assert not missing, f"README's layout does not name src/helpers/{missing}"
