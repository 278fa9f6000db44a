"""Turn clean documents into a messy "web dump", the raw text that notebook 01 cleans.

Taught in notebooks/01_pretraining.ipynb. Text scraped from the web is full of junk: HTML,
markup, links, garbled characters, duplicates, stray whitespace and page furniture. Each
kind of junk has one small function here, so a notebook can show what the scraper did;
`rlhf_lab.cleaning` has the matching function that undoes it.

Everything is drawn from one `random.Random(seed)`: the same documents and seed give the
same dump, byte for byte, on every machine.
"""
from __future__ import annotations

import random
import re

# Hosts reserved for examples (RFC 2606), so no link in the dump points anywhere real.
HOSTS = ["frogfacts.example", "example.com", "pets.example.org", "zoo.example.net",
         "forum.example"]
PATH_WORDS = ["animals", "facts", "blog", "post", "frog", "cats", "news", "page", "wiki",
              "sums", "2021", "archive"]
SEPARATORS = ["\n\n", "\n\n\n", "\n \n\t\n", "\r\n\r\n"]
SEPARATOR_WEIGHTS = [85, 7, 4, 4]

# A word the scraper may wrap in markup or a tag: plain letters between spaces (or the
# ends of a line) and punctuation, never part of a URL, an entity or a garbled character.
_PLAIN_WORD = re.compile(r"(?<!\S)[A-Za-z]+(?![^\s.,!?:;])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def random_url(rng: random.Random) -> str:
    """A link such as https://frogfacts.example/blog/frog?id=42 or www.example.com/news."""
    path = "/".join(rng.choice(PATH_WORDS) for _ in range(rng.randint(1, 3)))
    host = rng.choice(HOSTS)
    if rng.random() < 0.3:
        return f"www.{host}/{path}"
    query = f"?id={rng.randint(1, 999)}" if rng.random() < 0.4 else ""
    return f"{rng.choice(['https', 'http'])}://{host}/{path}{query}"


def _wrap_a_word(doc: str, rng: random.Random, template: str) -> str:
    """Put one plain word of `doc` into `template`, e.g. '**{}**' makes it bold."""
    words = list(_PLAIN_WORD.finditer(doc))
    if not words:
        return doc
    word = rng.choice(words)
    return doc[:word.start()] + template.format(word.group()) + doc[word.end():]


def _replace_a_space(doc: str, rng: random.Random, replacement: str) -> str:
    """Replace one space of `doc`, picked at random, with `replacement`."""
    spaces = [match.start() for match in re.finditer(" ", doc)]
    if not spaces:
        return doc
    at = rng.choice(spaces)
    return doc[:at] + replacement + doc[at + 1:]


def repeat_a_line(doc: str, rng: random.Random) -> str:
    """Copy one line to a later place in the document, as a scraper that read it twice."""
    lines = doc.split("\n")
    line = rng.randrange(len(lines))
    lines.insert(rng.randint(line + 1, len(lines)), lines[line])
    return "\n".join(lines)


def _misread_as_cp1252(char: str) -> str:
    """One character's UTF-8 bytes read as Windows-1252: '’' -> 'â€™', 'é' -> 'Ã©'.

    A character whose bytes cp1252 cannot show (like '”', which ends in byte 0x9D) is kept.
    """
    try:
        return char.encode("utf-8").decode("cp1252")
    except UnicodeDecodeError:
        return char


def add_mojibake(doc: str, rng: random.Random) -> str:
    """Garble the non-ASCII characters, as a page saved in UTF-8 but read as Windows-1252.

    First the page's editor made apostrophes and minus signs typographic (' -> ’, ' - ' ->
    ' – '), so that plain ASCII text has something to garble too.
    """
    doc = doc.replace("'", "’").replace(" - ", " – ")
    return "".join(_misread_as_cp1252(char) for char in doc)


def add_markup(doc: str, rng: random.Random) -> str:
    """Add one piece of markdown or wiki markup: a heading, bold, italics or a link."""
    if rng.random() < 0.2:
        return "#" * rng.randint(1, 3) + " " + doc
    template = rng.choice(["**{}**", "_{}_", "'''{}'''", "[{}](" + random_url(rng) + ")"])
    return _wrap_a_word(doc, rng, template)


def add_url(doc: str, rng: random.Random) -> str:
    """Insert a link between two words, or append it to the end of a line."""
    url = random_url(rng)
    if " " in doc and rng.random() < 0.5:
        return _replace_a_space(doc, rng, f" {url} ")
    lines = doc.split("\n")
    line = rng.randrange(len(lines))
    lines[line] += " " + url
    return "\n".join(lines)


def escape_entities(text: str) -> str:
    """Write & < > " ' as HTML entities: 'a frog & a toad' -> 'a frog &amp; a toad'."""
    return "".join(_ENTITIES.get(char, char) for char in text)


def add_html(doc: str, rng: random.Random) -> str:
    """Make the document a piece of a page: entities (&amp; &#39;), maybe an &nbsp;, a tag
    around one word (<b>, <span>, <a>), <br/> at line ends, and <p> or <div> around it all."""
    doc = escape_entities(doc)
    if rng.random() < 0.3:
        doc = _replace_a_space(doc, rng, "&nbsp;")
    if rng.random() < 0.5:
        link = '<a href="' + random_url(rng) + '">{}</a>'
        tag = rng.choice(["<b>{}</b>", "<span>{}</span>", link])
        doc = _wrap_a_word(doc, rng, tag)
    if rng.random() < 0.5:
        doc = doc.replace("\n", "<br/>\n")
    opening, closing = rng.choice([("<p>", "</p>"), ('<div class="post-body">', "</div>"),
                                   ('<div class="post-body">\n', "\n</div>")])
    return opening + doc + closing


def add_stray_whitespace(doc: str, rng: random.Random) -> str:
    """Widen or replace one space (two spaces, tab, no-break space, zero-width space), pad
    a line with spaces or tabs and, some of the time, end lines with Windows' \\r\\n."""
    doc = _replace_a_space(doc, rng, rng.choice(["  ", "\t", "\u00a0", " \u200b"]))
    lines = doc.split("\n")
    line = rng.randrange(len(lines))
    padding = ["", " ", "  ", "\t", " \t"]
    lines[line] = rng.choice(padding) + lines[line] + rng.choice(padding)
    doc = "\n".join(lines)
    if rng.random() < 0.3:
        doc = doc.replace("\n", "\r\n")
    return doc


# (kind, share of documents, function), in the order a page picks them up.
JUNK = [
    ("repeated line", 0.10, repeat_a_line),
    ("mojibake", 0.25, add_mojibake),
    ("markup", 0.20, add_markup),
    ("url", 0.15, add_url),
    ("html", 0.25, add_html),
    ("whitespace", 0.25, add_stray_whitespace),
]


def add_junk(doc: str, rng: random.Random) -> str:
    """Give one document each kind of junk in JUNK with that kind's probability."""
    for _kind, share, add in JUNK:
        if rng.random() < share:
            doc = add(doc, rng)
    return doc


def boilerplate_document(rng: random.Random) -> str:
    """A piece of page furniture that a scraper keeps as if it were text."""
    year = rng.randint(2015, 2024)
    date = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    menu = ["Home", "About", "Contact", "Blog", "Shop", "FAQ", "Privacy", "Log in"]
    return rng.choice([
        rng.choice(["Accept all cookies",
                    "We use cookies to improve your experience. Accept all cookies?",
                    "This site uses cookies. Cookie settings | Accept | Reject"]),
        " | ".join(rng.sample(menu, rng.randint(3, 5))),
        rng.choice(["404 Not Found", "Error 404: page not found",
                    "Oops! That page can’t be found."]),
        rng.choice(["Subscribe to our newsletter", "Sign up for our newsletter!",
                    "Subscribe to our newsletter for weekly animal facts."]),
        f"Posted by {rng.choice(['admin', 'jane', 'webmaster', 'bob99'])} on {date}",
        f"© {year} {rng.choice(HOSTS)}. All rights reserved.",
        "Share this: Facebook | Twitter | Email",
        "Click here to continue reading",
        random_url(rng),  # a bare link: nothing is left once links are removed
    ])


def _insert_at_random_places(docs: list[str], extra: list[str], rng: random.Random) -> list[str]:
    """A new list: `docs` in their order, with each of `extra` put at a random place."""
    docs = list(docs)
    for doc in extra:
        docs.insert(rng.randint(0, len(docs)), doc)
    return docs


def add_duplicates(docs: list[str], rng: random.Random, share: float = 0.10) -> list[str]:
    """Copy about `share` of the documents to other places: the same post scraped from two
    pages. Each copy collects its own junk, so the copies match exactly once cleaned."""
    copies = [doc for doc in docs if rng.random() < share]
    return _insert_at_random_places(docs, copies, rng)


def add_boilerplate(docs: list[str], rng: random.Random, share: float = 0.04) -> list[str]:
    """Add about `share` extra documents of page furniture (cookies, menus, 404s...)."""
    furniture = [boilerplate_document(rng) for _ in range(round(share * len(docs)))]
    return _insert_at_random_places(docs, furniture, rng)


def join_documents(pages: list[str], rng: random.Random) -> str:
    """Separate the documents by blank lines: mostly one, sometimes more, with stray
    whitespace on them or Windows line ends."""
    separators = rng.choices(SEPARATORS, weights=SEPARATOR_WEIGHTS, k=len(pages))
    return "".join(page + separator for page, separator in zip(pages, separators))


def make_web_dump(docs: list[str], seed: int) -> str:
    """The whole "web": `docs` with duplicates, page furniture and junk, as one string."""
    rng = random.Random(seed)
    docs = add_boilerplate(add_duplicates(docs, rng), rng)
    return join_documents([add_junk(doc, rng) for doc in docs], rng)
