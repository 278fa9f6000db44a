import random
import re

import pytest

from rlhf_lab.cleaning import (FILTERS, STEPS, clean_corpus, deduplicate, drop_repeated_lines,
                               fix_mojibake, is_boilerplate, normalise_text, remove_urls,
                               split_documents, strip_html, strip_markup)
from rlhf_lab.webdump import make_web_dump

ANIMALS = ["frog", "cat", "owl", "hen", "toad", "duck", "bear", "fox", "goat", "crab"]
COLOURS = ["green", "grey", "brown", "red", "yellow", "white", "black", "blue"]
PLACES = ["pond", "café", "forest", "barn", "river", "field", "sea"]


def clean_documents(n: int, seed: int) -> list[str]:
    """`n` varied clean documents, dialogues and paragraphs, some with ’ “ ” — é in them."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        animal, colour, place = rng.choice(ANIMALS), rng.choice(COLOURS), rng.choice(PLACES)
        docs.append(rng.choice([
            f"User: what colour is a {animal}?\nAssistant: A {animal} is {colour}.",
            f"User: where does the {animal} live?\nAssistant: It’s in the {place}, I think.",
            f"User: what is {i} - 2?\nAssistant: {i} minus 2 is {i - 2}. Don't forget it.",
            f"User: say something kind about {animal}s.\n"
            f"Assistant: “{animal.capitalize()}s are lovely” — everyone says so.",
            f"{animal.capitalize()}s are {colour}. They live in the {place}.",
            f"My {animal} doesn't like the {place} & the rain. It’s too cold — brr.",
            f"The {animal} at the café is {colour}. Touché, {animal} number {i}!",
        ]))
    return docs


def test_fix_mojibake_round_trip():
    text = "It’s the frog’s café — really."
    garbled = text.encode("utf-8").decode("cp1252")
    assert garbled == "Itâ€™s the frogâ€™s cafÃ© â€” really."
    assert fix_mojibake(garbled) == text
    assert fix_mojibake(text) == text  # clean text, accents and all, is left alone
    # ” cannot be garbled (its last byte, 9D, has no cp1252 character); “ can.
    assert fix_mojibake("â€œgreen” Ã\u00a0 la") == "“green” à la"


def test_fix_mojibake_repairs_runs_among_other_characters():
    assert fix_mojibake("donâ€™t\u200b cafÃ©\u00a0ok ”") == "don’t\u200b café\u00a0ok ”"


def test_strip_html_removes_tags_and_decodes_entities():
    assert strip_html("<p>A frog &amp; a toad</p>") == "A frog & a toad"
    page = '<div class="post-body">It&#39;s <b>green</b>,&nbsp;&quot;ok&quot;<br/>\n</div>'
    assert strip_html(page) == 'It\'s green,\u00a0"ok"\n'
    assert strip_html("3 < 5 and 6 > 4") == "3 < 5 and 6 > 4"  # not a tag
    assert strip_html("&lt;b&gt; is a tag") == "<b> is a tag"  # escaped text stays text


def test_strip_markup_keeps_the_text():
    assert strip_markup("A **frog** is _green_.") == "A frog is green."
    assert strip_markup("'''Frogs''' live in [ponds](https://frogfacts.example/ponds).") == \
        "Frogs live in ponds."
    assert strip_markup("## User: hi\nAssistant: hello") == "User: hi\nAssistant: hello"
    assert strip_markup("what is 3 * 4? snake_case stays") == "what is 3 * 4? snake_case stays"


def test_remove_urls_leaves_the_words_around():
    assert remove_urls("A frog https://frogfacts.example/frog?id=3 is green.") == "A frog is green."
    assert remove_urls("Frogs are green. www.example.com/frogs") == "Frogs are green."
    assert remove_urls("User: hi http://forum.example/a\nAssistant: hello") == \
        "User: hi\nAssistant: hello"


def test_normalise_text():
    messy = "  Frogs\u00a0are \u200bgreen —  “really”\t \r\nIt’s\t\tso.\r\n\n"
    assert normalise_text(messy) == 'Frogs are green - "really"\nIt\'s so.'
    assert normalise_text("Ｆｒｏｇ") == "Frog"  # NFKC: full-width letters
    assert normalise_text(normalise_text(messy)) == normalise_text(messy)


def test_drop_repeated_lines():
    assert drop_repeated_lines("User: hi\nUser: hi\nAssistant: hello\nUser: hi") == \
        "User: hi\nAssistant: hello"
    rambling = "Assistant: A frog is green. A frog is green."  # repeats inside a line stay
    assert drop_repeated_lines(rambling) == rambling


@pytest.mark.parametrize("furniture", [
    "Accept all cookies", "Home | About | Contact", "404 Not Found", "Error 404: page not found",
    "Oops! That page can't be found.", "Subscribe to our newsletter",
    "Posted by admin on 2021-03-04", "© 2019 example.com. All rights reserved.",
    "Share this: Facebook | Twitter | Email", "Click here to continue reading"])
def test_boilerplate_is_detected(furniture):
    assert is_boilerplate(furniture)


@pytest.mark.parametrize("doc", [
    "User: what colour is a frog?\nAssistant: A frog is green.",
    "User: do you like cookies?\nAssistant: I do not know.",
    "This website has great deals. Tomorrow is a holiday.",
    "User: what is 400 plus 4?\nAssistant: 400 plus 4 is 404."])
def test_real_documents_are_not_boilerplate(doc):
    assert not is_boilerplate(doc)


def test_split_documents_tolerates_crlf_and_whitespace_lines():
    text = "\nUser: hi\r\nAssistant: hello\r\n\r\nFrogs.\n \n\t\n\nToads.  \n\n\n"
    assert split_documents(text) == ["User: hi\r\nAssistant: hello", "Frogs.", "Toads."]


def test_deduplicate_keeps_first_copies_in_order():
    assert deduplicate(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_report_counts_every_step_in_order():
    dump = ("<p>A frog &amp; a toad.</p>\n\nAccept all cookies\n\n"
            "A frog & a toad.\n\nhttps://frogfacts.example\n\nUser: hi\nAssistant: hello\n")
    report = clean_corpus(dump)
    assert report.documents == ["A frog & a toad.", "User: hi\nAssistant: hello"]
    counts = report.counts.set_index("step")
    assert list(counts.index) == [name for name, _ in STEPS + FILTERS]
    assert counts.loc["html", "documents_changed"] == 1
    assert counts.loc["urls", "documents_changed"] == 1
    assert counts.loc["boilerplate", "documents_removed"] == 1
    assert counts.loc["empty", "documents_removed"] == 1
    assert counts.loc["duplicates", "documents_removed"] == 1
    assert counts.loc["duplicates", "chars_after"] == sum(map(len, report.documents))
    assert report.examples["html"] == ("<p>A frog &amp; a toad.</p>", "A frog & a toad.")
    assert report.examples["duplicates"] == ("A frog & a toad.", "")
    assert "markup" not in report.examples  # nothing to show where nothing changed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cleaning_the_dump_recovers_every_document_and_nothing_else(seed):
    originals = clean_documents(300, seed)
    report = clean_corpus(make_web_dump(originals, seed))
    cleaned = report.documents

    assert set(cleaned) == {normalise_text(doc) for doc in originals}
    assert len(cleaned) == len(set(cleaned))
    for junk in ["<", "&amp;", "http", "www.", "â€", "Ã", "\u200b", "\u00a0", "\r", "**", "##"]:
        assert not any(junk in doc for doc in cleaned), junk
    assert not any(is_boilerplate(doc) for doc in cleaned)
    for doc in cleaned:
        if doc.startswith("User: "):
            assert re.fullmatch(r"User: [^\n]+\nAssistant: [^\n]+", doc), doc
    # The dump did carry every kind of junk: each step had work to do.
    assert (report.counts.documents_changed + report.counts.documents_removed > 0).all()


def test_cleaning_is_deterministic():
    dump = make_web_dump(clean_documents(100, seed=5), seed=5)
    first, second = clean_corpus(dump), clean_corpus(dump)
    assert first.documents == second.documents
    assert first.examples == second.examples
    assert first.counts.equals(second.counts)
