"""The dry run: the gpu profile's settings with every loop cut short, on the CPU, kept out of results/."""

import importlib
import os

import pytest
from conftest import ROOT

from helpers import backbones
from helpers.core import cli, profiles, results

STUDIES = sorted(p.stem for p in (ROOT / "src" / "helpers" / "studies").glob("ch*.py"))
# The fields that size a chapter's networks and inputs: a dry run keeps the gpu profile's values.
NETWORK_FIELDS = {
    "ch01_jpeg_bytes": ("embed_dim", "hidden", "batch_size", "reader_bytes", "reader_channels", "reader_hidden",
                        "reader_batch"),
    "ch02_colorization": ("size", "batch_size", "stages"),
    "ch03_anomaly_compression": ("backbone", "resize", "crop", "batch_size"),  # dims: see the test below
    "ch04_food_stargan": ("image_size", "test_size", "g_width", "g_res_blocks", "d_width", "d_layers", "n_critic",
                          "judge_size"),
    "ch05_jpeg_robustness": ("pretrained_mixes",),
}


@pytest.mark.parametrize("study", STUDIES)
def test_a_dry_run_keeps_the_gpu_networks_and_cuts_the_loops(study):
    module = importlib.import_module(f"helpers.studies.{study}")
    gpu, dry = module.settings("gpu"), module.settings("dryrun")
    assert {f: getattr(dry, f) for f in NETWORK_FIELDS[study]} == {f: getattr(gpu, f) for f in NETWORK_FIELDS[study]}
    assert dry != gpu


def test_the_dry_run_of_chapter_05_keeps_every_network_size():
    from helpers.studies import ch05_jpeg_robustness as study

    gpu, dry = study.settings("gpu"), study.settings("dryrun")
    for part in ("classify", "pretrained"):
        for field in ("image_size", "store_size", "arch", "lr"):
            assert getattr(getattr(dry, part), field) == getattr(getattr(gpu, part), field)
    for field in ("image_size", "grid", "embed_dim", "hidden_dim", "attention_dim", "max_words", "beam"):
        assert getattr(dry.caption, field) == getattr(gpu.caption, field)
    assert not dry.classify.full and not dry.caption.karpathy  # the offline copies, not the downloads


def test_the_dry_run_of_chapter_03_fits_padim_on_fewer_dimensions_and_sizes_the_gpu_for_the_paper_s():
    from helpers.models.padim import feature_dims
    from helpers.studies import ch03_anomaly_compression as study

    gpu, dry = study.settings("gpu"), study.settings("dryrun")
    assert gpu.dims_rule == "paper" and feature_dims(gpu.backbone, 1792, gpu.dims_rule) == 550
    assert feature_dims(dry.backbone, 1792, dry.dims_rule) == 64
    fit_memory = study.gpu_memory(gpu)[0]
    assert "550 x 550" in fit_memory.name


def test_a_dry_run_gets_the_gpu_architecture_with_random_weights():
    for name in backbones.TORCHVISION_NAMES:
        choice = backbones.choose(name, "auto", profiles.DRYRUN, any_arch=True)
        assert (choice.weights, choice.arch) == ("random", name) and "dryrun" in choice.reason
    assert backbones.choose("efficientnet_lite0", "auto", profiles.DRYRUN).weights == "imagenet"  # packaged: no download


def test_dry_run_results_never_reach_results(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOK_RESULTS_DIR", raising=False)
    monkeypatch.setattr(results, "project_root", lambda: tmp_path)
    results.save("99", profiles.DRYRUN, {"x": 1}, {})
    assert (tmp_path / "_build" / "runs" / "dryrun" / "99.dryrun.json").is_file()
    assert not (tmp_path / "results").exists()


def test_only_the_dryrun_command_runs_the_dryrun_profile():
    with pytest.raises(SystemExit):
        cli.main(["run", "02", "--profile", "dryrun"])


# The dry runs the suite executes: about 25 s (01), 35 s (02) and 40 s (03, PaDiM on 64 random dimensions)
# on two CPU cores. Those of 04 (about 5 minutes: the StarGAN's 256-px networks, every evaluation
# translating photos with the full-size generator, also at 512 px) and 05 (about 2 minutes: captioning at
# the gpu network size) run with `make dryrun`: even cut further (150 s and 90 s), the two would take the
# suite plus a fresh install past 9.5 of CI's 10 minutes.
IN_SUITE = ("01", "02", "03")


@pytest.mark.skipif(not os.environ.get("BOOK_DATA_DIR"), reason="needs the offline datasets (BOOK_DATA_DIR)")
@pytest.mark.parametrize("chapter", IN_SUITE)
def test_the_chapter_passes_its_dry_run(chapter, capsys):
    cli.main(["dryrun", chapter])
    out = capsys.readouterr().out
    notebook = cli.chapter_notebooks(ROOT / "chapters")[chapter]
    assert f"dry run of chapters/{notebook.name} at the gpu profile's settings passed" in out
    assert "15 GB T4" in out
    assert (ROOT / "_build" / "runs" / "dryrun" / notebook.name).is_file()
