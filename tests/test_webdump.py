import hashlib
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter

from rlhf_lab.webdump import (HOSTS, add_duplicates, add_html, add_markup, add_mojibake,
                              add_stray_whitespace, add_url, boilerplate_document,
                              escape_entities, make_web_dump, repeat_a_line)

DIALOGUE = "User: what colour is a frog?\nAssistant: A frog is green."
PARAGRAPH = "Frogs are green. They live in ponds."
DOCS = [DIALOGUE, PARAGRAPH, "User: what is 7 - 3?\nAssistant: 7 minus 3 is 4.",
        "My cat doesn't like the rain.", "The frog’s café is “green” — really.",
        "User: where does a toad live?\nAssistant: It’s in the river, I think.",
        "Cats & dogs are friends."]
MANY_DOCS = [f"{doc} ({i})" for i in range(60) for doc in DOCS]


def _rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


def test_same_seed_same_dump_other_seed_other_dump():
    assert make_web_dump(MANY_DOCS, seed=3) == make_web_dump(MANY_DOCS, seed=3)
    assert make_web_dump(MANY_DOCS, seed=3) != make_web_dump(MANY_DOCS, seed=4)


def test_dump_is_the_same_under_any_hash_seed():
    script = ("import hashlib, json, sys; from rlhf_lab.webdump import make_web_dump; "
              "dump = make_web_dump(json.load(sys.stdin), seed=1); "
              "print(hashlib.sha256(dump.encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], input=json.dumps(MANY_DOCS),
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
                              capture_output=True, text=True).stdout.strip()
               for seed in ("0", "1", "12345")}
    here = hashlib.sha256(make_web_dump(MANY_DOCS, seed=1).encode()).hexdigest()
    assert digests == {here}


def test_mojibake_misreads_utf8_as_cp1252():
    assert add_mojibake("It’s a café — “nice”", _rng()) == "Itâ€™s a cafÃ© â€” â€œnice”"
    # Plain ASCII gets typographic apostrophes and minus signs first, then garbled.
    assert add_mojibake("what's 7 - 3?", _rng()) == "whatâ€™s 7 â€“ 3?"
    assert add_mojibake("Frogs are green.", _rng()) == "Frogs are green."


def test_html_escapes_entities_and_wraps_in_tags():
    assert escape_entities("a frog & a \"toad\" isn't <big>") == \
        "a frog &amp; a &quot;toad&quot; isn&#39;t &lt;big&gt;"
    doc = "My cat doesn't like rain & snow.\nReally."
    pages = [add_html(doc, _rng(seed)) for seed in range(40)]
    for page in pages:
        assert page.startswith(("<p>", '<div class="post-body">'))
        assert page.endswith(("</p>", "</div>"))
        assert "&#39;" in page and "&amp;" in page
    assert any("<br/>\n" in page for page in pages)
    assert any("&nbsp;" in page for page in pages)
    assert any(re.search(r"<(b|span|a href=\"[^\"]+\")>\w+</(b|span|a)>", page) for page in pages)


def test_markup_adds_headings_bold_italics_wiki_and_links():
    marked = [add_markup(PARAGRAPH, _rng(seed)) for seed in range(60)]
    assert all(page != PARAGRAPH for page in marked)
    assert any(re.match(r"#{1,3} Frogs are green", page) for page in marked)
    assert any(re.search(r"\*\*[a-zA-Z]+\*\*", page) for page in marked)
    assert any(re.search(r"(^| )_[a-zA-Z]+_", page) for page in marked)
    assert any(re.search(r"'''[a-zA-Z]+'''", page) for page in marked)
    assert any(re.search(r"\[[a-zA-Z]+\]\(\S+\)", page) for page in marked)


def test_url_is_added_and_the_words_stay():
    for seed in range(20):
        page = add_url(DIALOGUE, _rng(seed))
        urls = re.findall(r"(?:https?://|www\.)\S+", page)
        assert len(urls) == 1
        assert page.replace(" " + urls[0], "") == DIALOGUE


def test_repeat_a_line_copies_one_line_later():
    for seed in range(10):
        lines = repeat_a_line(DIALOGUE, _rng(seed)).split("\n")
        assert len(lines) == 3
        assert list(dict.fromkeys(lines)) == DIALOGUE.split("\n")


def test_stray_whitespace_changes_only_whitespace():
    pages = [add_stray_whitespace(DIALOGUE, _rng(seed)) for seed in range(60)]
    for page in pages:
        assert page.replace("\u200b", "").split() == DIALOGUE.split()
    for junk in ["\t", "  ", "\u00a0", "\u200b", "\r\n"]:
        assert any(junk in page for page in pages), junk


def test_boilerplate_documents_vary():
    furniture = {boilerplate_document(_rng(seed)) for seed in range(200)}
    assert len(furniture) > 50
    assert "404 Not Found" in furniture
    assert any(doc.startswith("Posted by ") for doc in furniture)


def test_about_a_tenth_of_documents_are_copied_elsewhere():
    docs = [f"document {i}" for i in range(2000)]
    with_copies = add_duplicates(docs, _rng())
    assert 150 < len(with_copies) - len(docs) < 250
    assert set(Counter(with_copies).values()) == {1, 2}
    remaining = iter(with_copies)
    assert all(doc in remaining for doc in docs)  # the originals keep their order


def test_dump_has_every_kind_of_junk():
    dump = make_web_dump(MANY_DOCS, seed=0)
    for junk in ["<p>", "<br/>", "&amp;", "&#39;", "**", "'''", "](", "https://", "www.",
                 "â€™", "Ã©", "\u00a0", "\u200b", "\t", "\r\n", "\n\n\n"]:
        assert junk in dump, junk
    assert re.search(r"^#{1,3} ", dump, re.MULTILINE)
    hosts = re.findall(r"(?:https?://|www\.)([^/\s\"]+)", dump)
    assert hosts and set(hosts) <= set(HOSTS)
    furniture = ["cookies", "newsletter", "Posted by", "|", "404", "rights reserved"]
    assert sum(dump.count(word) for word in furniture) > 5


def test_dump_keeps_documents_apart_by_blank_lines():
    dump = make_web_dump(DOCS, seed=0).replace("\r\n", "\n")
    pages = [page for page in re.split(r"\n\s*\n", dump) if page.strip()]
    assert len(pages) >= len(DOCS)
