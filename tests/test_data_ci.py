"""The GitHub Actions workflow and the CPU-only install: the properties CI relies on."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps_of(job: dict) -> list[str]:
    return [
        str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"]
    ]


def test_runs_are_grouped_per_branch(workflow):
    assert "github.ref" in workflow["concurrency"]["group"]
    assert "cancel-in-progress" in workflow["concurrency"]


def test_the_data_cache_is_keyed_on_the_archive_registry(workflow):
    caches = [
        s["with"]
        for s in workflow["jobs"]["test"]["steps"]
        if s.get("uses", "").startswith("actions/cache")
    ]
    assert len(caches) == 1
    assert "hashFiles('src/helpers/data/book_archives.py'" in caches[0]["key"]
    assert caches[0]["path"].endswith("compressed-images-book/book-sized")
    setup = next(
        s
        for s in workflow["jobs"]["test"]["steps"]
        if s.get("uses", "").startswith("actions/setup-python")
    )
    assert setup["with"]["cache"] == "pip"


def test_the_test_job_installs_cpu_torch_and_runs_the_ci_command(workflow):
    steps = steps_of(workflow["jobs"]["test"])
    assert any(s.startswith("make install-cpu") for s in steps)
    assert steps[-1] == "bash .ci/run"
    assert "https://download.pytorch.org/whl/cpu" in (ROOT / "Makefile").read_text()


def test_publish_builds_the_site_without_torch(workflow):
    job = workflow["jobs"]["publish"]
    assert job["needs"] == "test" and "refs/heads/main" in job["if"]
    runs = " ".join(s for s in steps_of(job))
    assert "jupyter-book build" in runs and "torch" not in runs and "make " not in runs


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_cpu_constraints_drop_the_cuda_wheels_and_keep_the_rest(tmp_path):
    target = tmp_path / "cpu.txt"
    subprocess.run(
        ["make", "-s", "cpu-constraints", f"CPU_CONSTRAINTS={target}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    kept = target.read_text().splitlines()
    full = (ROOT / "constraints.txt").read_text().splitlines()
    dropped = sorted(set(full) - set(kept))
    assert dropped and all(
        line.split("-")[0].lower() in {"nvidia", "cuda"} or line.startswith("triton==")
        for line in dropped
    )
    assert {line for line in kept if line.startswith(("torch==", "torchvision=="))} == {
        line for line in full if line.startswith(("torch==", "torchvision=="))
    }
    dry = subprocess.run(
        ["make", "-n", "install-cpu", f"CPU_CONSTRAINTS={target}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    torch_pin = next(line for line in full if line.startswith("torch=="))
    assert f"--index-url https://download.pytorch.org/whl/cpu {torch_pin}" in dry
