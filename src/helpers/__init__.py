"""Helpers for the book *Learning from Compressed Images*.

Every reusable piece of the five chapters lives here, with unit tests in ``tests/``:
profiles (``helpers.core.profiles``), datasets (``helpers.data``), results and provenance
(``helpers.core.results``) and the book's generated pages (``helpers.core.scoreboard``).
"""

import warnings

__version__ = "0.1.0"

# timm imports tqdm.auto, which warns in a notebook without ipywidgets; the book's progress bars
# are plain text (and silent in CI), so the warning is noise on every chapter page.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

BOOK_TITLE = "Learning from Compressed Images"
BOOK_SLUG = "compressed-images-book"
