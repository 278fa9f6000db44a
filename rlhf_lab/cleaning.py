"""Clean the raw "web dump" into documents fit for pretraining.

Taught in notebooks/01_pretraining.ipynb. One small function per kind of junk (the kinds
that `rlhf_lab.webdump` adds), each taking one document and returning it cleaned; STEPS
holds them in the order that works. Then whole documents are dropped: page furniture,
documents left empty, and duplicates. `clean_corpus` runs it all and reports, for every
step, how many documents it touched and one example of what it did.
"""
from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import pandas as pd

# The characters that the bytes 0x80-0xBF become when UTF-8 text is read as Windows-1252:
# the second and third bytes of every garbled character (€ ™ © ...).
_CONTINUATION = bytes(range(0x80, 0xC0)).decode("cp1252", errors="ignore")
# Latin letters (é = bytes C3 A9) show as Ã or Â plus one such character; typographic
# punctuation (’ = bytes E2 80 99) as â plus two.
_MOJIBAKE = re.compile(f"[ÂÃ][{_CONTINUATION}]|â[{_CONTINUATION}]{{2}}")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_MARKUP = [
    (re.compile(r"\[([^\]\n]+)\]\([^)\s]*\)"), r"\1"),  # [text](url) -> text
    (re.compile(r"\*\*([^*\n]+)\*\*"), r"\1"),  # **bold**
    (re.compile(r"'''([^'\n]+)'''"), r"\1"),  # '''wiki bold'''
    (re.compile(r"(?<!\w)_([^_\n]+)_(?!\w)"), r"\1"),  # _italics_
    (re.compile(r"^[ \t]*#{1,6}\s+", re.MULTILINE), ""),  # ## heading
]
_URL = re.compile(r"[ \t]*(?:https?://|www\.)\S+")
_TO_ASCII = str.maketrans({
    "‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-",
    "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None,  # zero-width characters
})
_BOILERPLATE = re.compile(
    r"accept all cookies|uses cookies|cookie settings|404 not found|error 404|page not found"
    r"|page can't be found|our newsletter|^posted by \S+ on \d{4}-\d\d-\d\d|all rights reserved"
    r"|^click here|^[^|\n]+(?:\|[^|\n]+){2,}$",  # a menu: three or more items between bars
    re.IGNORECASE | re.MULTILINE)
_BLANK_LINES = re.compile(r"\r?\n(?:[^\S\n]*\n)+")  # a line end, then lines of only whitespace


def split_documents(text: str) -> list[str]:
    """Cut the dump into documents at blank lines (\\r\\n and whitespace-only lines too),
    each without the whitespace around it.

    Taught in notebooks/01_pretraining.ipynb.
    """
    return [doc.strip() for doc in _BLANK_LINES.split(text) if doc.strip()]


def _repair(garbled: re.Match) -> str:
    return garbled.group().encode("cp1252").decode("utf-8")


def fix_mojibake(doc: str) -> str:
    """Undo UTF-8 read as Windows-1252: 'donâ€™t' -> 'don’t', 'cafÃ©' -> 'café'.

    Taught in notebooks/01_pretraining.ipynb. Only runs that can be nothing but garbled
    text are repaired (their characters turned back into bytes and read as UTF-8), so
    clean text, even with é and ’ in it, is left alone.
    """
    return _MOJIBAKE.sub(_repair, doc)


def strip_html(doc: str) -> str:
    """Remove tags, then decode entities: '<p>A frog &amp; a toad</p>' -> 'A frog & a toad'.

    Taught in notebooks/01_pretraining.ipynb. Tags go first, so that an escaped '&lt;b&gt;'
    in the text becomes '<b>' and stays.
    """
    return html.unescape(_TAG.sub("", doc))


def strip_markup(doc: str) -> str:
    """Keep the text of markdown and wiki markup: '**big**' -> 'big', '[frogs](url)' -> 'frogs'.

    Taught in notebooks/01_pretraining.ipynb. Handles **bold**, _italics_, '''wiki bold''',
    [links](url) and '## heading' marks.
    """
    for pattern, replacement in _MARKUP:
        doc = pattern.sub(replacement, doc)
    return doc


def remove_urls(doc: str) -> str:
    """Drop links (http://, https://, www.) and the space before them; words around stay.

    Taught in notebooks/01_pretraining.ipynb.
    """
    return _URL.sub("", doc)


def normalise_text(doc: str) -> str:
    """One spelling for the same text: NFKC, ASCII quotes and dashes, no zero-width or
    no-break spaces, one space between words, \\n line ends, no empty or padded lines.

    Taught in notebooks/01_pretraining.ipynb.
    """
    doc = unicodedata.normalize("NFKC", doc).translate(_TO_ASCII)  # NFKC: no-break space -> space
    doc = re.sub(r"\r\n?", "\n", doc)
    doc = re.sub(r"[^\S\n]+", " ", doc)  # runs of spaces and tabs -> one space
    return "\n".join(line.strip() for line in doc.split("\n") if line.strip())


def drop_repeated_lines(doc: str) -> str:
    """Keep only the first copy of each line of a document (a scraper read it twice).

    Taught in notebooks/01_pretraining.ipynb.
    """
    return "\n".join(dict.fromkeys(doc.split("\n")))


def is_boilerplate(doc: str) -> bool:
    """True for page furniture: cookie banners, menus, 404 pages, newsletters, bylines.

    Taught in notebooks/01_pretraining.ipynb. Run it on cleaned documents.
    """
    return _BOILERPLATE.search(doc) is not None


def drop_boilerplate(docs: list[str]) -> list[str]:
    """The documents that are not page furniture (see `is_boilerplate`).

    Taught in notebooks/01_pretraining.ipynb.
    """
    return [doc for doc in docs if not is_boilerplate(doc)]


def drop_empty(docs: list[str]) -> list[str]:
    """The documents that still have text after cleaning.

    Taught in notebooks/01_pretraining.ipynb.
    """
    return [doc for doc in docs if doc]


def deduplicate(docs: list[str]) -> list[str]:
    """The first copy of every document, in order: ['a', 'b', 'a'] -> ['a', 'b'].

    Taught in notebooks/01_pretraining.ipynb.
    """
    return list(dict.fromkeys(docs))


# Fixes applied to every document, in order: each takes one document and returns it.
STEPS: list[tuple[str, Callable[[str], str]]] = [
    ("mojibake", fix_mojibake),
    ("html", strip_html),
    ("markup", strip_markup),
    ("urls", remove_urls),
    ("whitespace", normalise_text),
    ("repeated lines", drop_repeated_lines),
]
# Then filters over the whole corpus, in order: each takes the documents and keeps some.
FILTERS: list[tuple[str, Callable[[list[str]], list[str]]]] = [
    ("boilerplate", drop_boilerplate),
    ("empty", drop_empty),
    ("duplicates", deduplicate),
]


@dataclass
class CleaningReport:
    """What `clean_corpus` made of a dump.

    documents: the clean documents. counts: one row per step, in pipeline order.
    examples: for each step that changed anything, its first (before, after) pair; a
    removed document has after == "".
    """

    documents: list[str]
    counts: pd.DataFrame
    examples: dict[str, tuple[str, str]]


def _first_removed(before: list[str], after: list[str]) -> str:
    """The first document of `before` that `after` no longer has (copies counted)."""
    left = Counter(after)
    for doc in before:
        if left[doc] == 0:
            return doc
        left[doc] -= 1
    raise ValueError("no document was removed")


def clean_corpus(text: str) -> CleaningReport:
    """Split the dump, run every step of STEPS and FILTERS, and count what each did.

    Taught in notebooks/01_pretraining.ipynb.
    """
    docs = split_documents(text)
    rows, examples = [], {}
    for name, fix in STEPS:
        fixed = [fix(doc) for doc in docs]
        changed = [(old, new) for old, new in zip(docs, fixed) if old != new]
        if changed:
            examples[name] = changed[0]
        rows.append(_count(name, docs, fixed, changed=len(changed)))
        docs = fixed
    for name, keep in FILTERS:
        kept = keep(docs)
        if len(kept) < len(docs):
            examples[name] = (_first_removed(docs, kept), "")
        rows.append(_count(name, docs, kept, changed=0))
        docs = kept
    return CleaningReport(documents=docs, counts=pd.DataFrame(rows), examples=examples)


def _count(step: str, before: list[str], after: list[str], changed: int) -> dict:
    return {"step": step, "documents_changed": changed,
            "documents_removed": len(before) - len(after), "documents_left": len(after),
            "chars_before": sum(map(len, before)), "chars_after": sum(map(len, after))}
