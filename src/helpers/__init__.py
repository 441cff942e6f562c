"""Helpers for the book *Learning from Compressed Images*.

Every reusable piece of the five chapters lives here, with unit tests in ``tests/``:
profiles (``helpers.profiles``), datasets (``helpers.data``), results and provenance
(``helpers.results``) and the book's generated pages (``helpers.scoreboard``).
"""

__version__ = "0.1.0"

BOOK_TITLE = "Learning from Compressed Images"
BOOK_SLUG = "compressed-images-book"
