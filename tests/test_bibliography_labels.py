import sys

from conftest import ROOT
from pybtex.database import Entry, Person

sys.path.insert(0, str(ROOT / "book" / "_ext"))
from author_year_labels import AuthorYearLabelStyle, author_year_label  # noqa: E402


def entry(key, *authors, year="2018"):
    return (
        Entry(
            "article",
            fields={"year": year},
            persons={"author": [Person(a) for a in authors]},
        )
        if authors
        else Entry("misc", fields={"year": year})
    )


def test_labels_read_like_the_author_year_citations():
    assert author_year_label(entry("a", "Choi, Yunjey")) == "Choi 2018"
    assert (
        author_year_label(entry("b", "Tan, Mingxing", "Le, Quoc")) == "Tan and Le 2018"
    )
    assert (
        author_year_label(entry("c", "Choi, Y.", "Choi, M.", "Kim, M."))
        == "Choi et al. 2018"
    )
    assert author_year_label(entry("d", "Sha, A.", "others")) == "Sha et al. 2018"
    assert (
        author_year_label(entry("e", "{NTT Communications}"))
        == "NTT Communications 2018"
    )


def test_equal_labels_get_letters():
    a, b = entry("a", "Simonyan, K."), entry("b", "Simonyan, K.")
    a.key, b.key = "a", "b"
    assert list(AuthorYearLabelStyle().format_labels([a, b])) == [
        "Simonyan 2018a",
        "Simonyan 2018b",
    ]
