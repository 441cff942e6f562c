"""pyproject.toml's ranges, the constraints.txt lock and environment.yml must agree."""

import re
import tomllib

import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


# Extras outside the lock: pinned exactly in pyproject.toml itself, installed by hand.
UNLOCKED_EXTRAS = ("bench",)


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def direct_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in project()["dependencies"]]
    for name, extra in project()["optional-dependencies"].items():
        if name not in UNLOCKED_EXTRAS:
            reqs += [Requirement(r) for r in extra]
    return reqs


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for entry in pip_section:
        if "==" in entry:
            name, version = entry.split("==")
            pins[canonicalize_name(name)] = version
    assert "-e ." in pip_section, "environment.yml must install the project itself"
    return pins


def test_every_direct_dependency_is_pinned_within_its_range():
    pins = lock()
    for req in direct_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's range {req.specifier}")


def test_environment_yml_uses_the_same_pins():
    pins, conda = lock(), conda_pins()
    for req in direct_requirements():
        assert canonicalize_name(req.name) in conda, f"{req.name} is missing from environment.yml"
    for name, version in conda.items():
        assert pins.get(name) == version, f"environment.yml pins {name}=={version}, constraints.txt {pins.get(name)}"


def test_the_pins_the_book_promises():
    pins = lock()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["jupyter-book"].startswith("1.")


def test_unlocked_extras_pin_exact_versions_and_stay_out_of_the_lock():
    pins = lock()
    for name in UNLOCKED_EXTRAS:
        for req in map(Requirement, project()["optional-dependencies"][name]):
            assert [s.operator for s in req.specifier] == ["=="], f"[{name}] must pin {req.name} exactly"
            assert canonicalize_name(req.name) not in pins, f"[{name}]'s {req.name} must not enter the lock"


def test_torch_is_a_range_so_colab_keeps_its_own():
    torch_req = next(r for r in direct_requirements() if r.name == "torch")
    assert not any(s.operator == "==" for s in torch_req.specifier)


def test_environment_yml_python_matches_the_readme():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert re.search(r"python3\.11", (ROOT / "Makefile").read_text())


def imported_top_level(folder) -> set[str]:
    """Top-level module names imported anywhere under ``folder`` (absolute imports only)."""
    import ast

    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


# Imported only inside a function, when a reader asks for them; the chapter says how to install them.
OPTIONAL_IMPORTS = {
    "rembg": "chapter 03's mask_method='rembg' (the study's background remover)",
    "myst_nb": "results.glue, a no-op without the book extra (Colab)",
}


def test_every_package_the_helpers_import_is_declared():
    import importlib.metadata
    import sys

    # the core dependencies, and the extras for the command line (papermill, nbformat, yaml)
    declared = {canonicalize_name(r.name) for r in direct_requirements()}
    owners = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in imported_top_level(ROOT / "src" / "helpers") - set(sys.stdlib_module_names) - {"helpers"}:
        dists = {canonicalize_name(d) for d in owners.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    for module in OPTIONAL_IMPORTS:
        undeclared.pop(module, None)
    assert not undeclared, f"imported by helpers but not in pyproject.toml's dependencies: {undeclared}"


def test_the_import_check_sees_an_undeclared_import(tmp_path):
    (tmp_path / "a.py").write_text("import yaml\nfrom os import path\nfrom . import sibling\n")
    assert imported_top_level(tmp_path) == {"yaml", "os"}
