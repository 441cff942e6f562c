"""Bibliography labels that match the text's author-year citations: [Choi et al. 2018].

sphinxcontrib-bibtex labels the reference list with pybtex's ``alpha`` style ([CCK+18]) by
default, while the chapters cite author-year (``bibtex_reference_style: author_year``). This
extension registers a pybtex label style that writes "Surname 2018", "Surname and Other 2018"
or "Surname et al. 2018", and a formatting style ``author_year`` that uses it; ``_config.yml``
selects it with ``bibtex_default_style``.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    parts = person.prelast_names + person.last_names
    text = " ".join(str(Text.from_latex(p)) for p in parts) if parts else str(person)
    return text.replace("{", "").replace("}", "")


def author_year_label(entry) -> str:
    """'Surname YEAR', 'A and B YEAR' or 'A et al. YEAR' (editors, then the key, when no author)."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    year = entry.fields.get("year", "n.d.")
    if not people:
        return f"{entry.key} {year}"
    names = [_surname(p) for p in people]
    if "others" in names[1:]:  # BibTeX's "and others": the list is cut short
        return f"{names[0]} et al. {year}"
    who = (
        names[0]
        if len(names) == 1
        else f"{names[0]} and {names[1]}"
        if len(names) == 2
        else f"{names[0]} et al."
    )
    return f"{who} {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [author_year_label(entry) for entry in sorted_entries]
        seen: dict[str, int] = {}
        for label in labels:
            if labels.count(label) == 1:
                yield label
                continue
            seen[label] = seen.get(label, 0) + 1
            yield f"{label}{chr(ord('a') + seen[label] - 1)}"  # Simonyan 2015a, Simonyan 2015b


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
