"""The numbers the five studies report, as tables (transcribed from the original texts).

The CSV files in ``helpers/core/paper_numbers/`` hold numbers only; each chapter compares its
own measurements with them and the scoreboard shows both side by side.
"""

from __future__ import annotations

import csv
from importlib import resources

TABLES = {
    "000_claims": "MNIST from JPEG bytes: accuracy, ablations, glitch robustness (chapter 01)",
    "002_table1_compression_auc": "Compressed MVTec screw training set: size, ratio, PaDiM AUC (chapter 03)",
    "004_table1_psnr_ssim": "PSNR/SSIM of COCO test images vs JPEG quality (chapter 05)",
    "004_table2_top1": "ResNet-18 ImageNet top-1 vs test JPEG quality per training mix (chapter 05)",
    "004_table3_bleu4": "Show-Attend-Tell BLEU-4 vs test JPEG quality per training mix (chapter 05)",
}


def table(name: str) -> list[dict[str, str]]:
    """Rows of one paper table as dicts of strings (convert the cells you use)."""
    if name not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; available: {sorted(TABLES)}")
    text = resources.files("helpers.core").joinpath("paper_numbers", f"{name}.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))
