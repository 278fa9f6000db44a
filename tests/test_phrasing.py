"""Phrasing: the facts with seen and unseen phrasings, and the statistics of a phrasing table
(summary, seen-unseen gap, change of spread) checked against numbers worked out by hand."""
import math

import pandas as pd
import pytest

from rlhf_lab.evaluation import COLUMNS, SEEDS, sample_answers
from rlhf_lab.gold import gold_score
from rlhf_lab.phrasing import (
    answer_phrasings,
    facts_with_both,
    phrasing_questions,
    phrasing_summary,
    same_fact,
    seen_unseen_gap,
    spread_change,
)
from rlhf_lab.world import PHRASINGS, World

T_95_DF2 = 4.302653          # Student's t, two-sided 95 %, 2 degrees of freedom (tables)


def make_table(facts: dict[str, list[tuple[bool, list[float]]]]) -> pd.DataFrame:
    """A phrasing table by hand: for each fact, its phrasings as (seen, [total of sample 0,
    total of sample 1, ...]); rows sample-major like answer_phrasings."""
    rows = []
    k = max(len(totals) for phrasings in facts.values() for _, totals in phrasings)
    for j in range(k):
        for fact, phrasings in facts.items():
            kind = fact.split(":")[0]
            for i, (seen, totals) in enumerate(phrasings):
                rows.append({"fact": fact, "template": f"{kind}/{i}", "seen": seen,
                             "question": f"{fact}, asked the {i}th way", "sample": j,
                             "answer": f"answer {j}", "total": totals[j]})
    return pd.DataFrame(rows)


# Per-phrasing mean gold: A 4, 4 (seen) and (3 + 1) / 2 = 2, 2 (unseen);
# B 4 (seen) and (2 + 4) / 2 = 3 (unseen); C 2 (seen) and 2 (unseen).
HAND = {
    "colour: cat": [(True, [4, 4]), (True, [4, 4]), (False, [3, 1]), (False, [2, 2])],
    "plus: 1 plus 2": [(True, [4, 4]), (False, [2, 4])],
    "opposite: hot": [(True, [2, 2]), (False, [2, 2])],
}
# every fact's spread one larger: A means 4, 4, 0, 0 (sd 2); B 4, 1 (sd 1.5); C 3, 1 (sd 1)
WIDER = {
    "colour: cat": [(True, [4, 4]), (True, [4, 4]), (False, [0, 0]), (False, [0, 0])],
    "plus: 1 plus 2": [(True, [4, 4]), (False, [1, 1])],
    "opposite: hot": [(True, [3, 3]), (False, [1, 1])],
}
# A wider by 1 (as above), B narrower by 0.5 (4, 4: sd 0), C unchanged (sd 0)
MIXED = {
    "colour: cat": [(True, [4, 4]), (True, [4, 4]), (False, [0, 0]), (False, [0, 0])],
    "plus: 1 plus 2": [(True, [4, 4]), (False, [4, 4])],
    "opposite: hot": [(True, [2, 2]), (False, [2, 2])],
}


def test_phrasing_summary_by_hand():
    s = phrasing_summary(make_table(HAND)).set_index("fact")
    assert list(s.index) == list(HAND)                     # the table's order
    # A: seen (4 + 4) / 2 = 4, unseen (2 + 2) / 2 = 2, gap 2;
    #    means 4, 4, 2, 2 around 3: deviations ±1, population variance 4 / 4 = 1, sd 1
    # B: seen 4, unseen 3, gap 1; means 4, 3 around 3.5: variance 0.25, sd 0.5
    # C: seen 2, unseen 2, gap 0, sd 0
    assert s["gold_seen"].tolist() == [4, 4, 2]
    assert s["gold_unseen"].tolist() == [2, 3, 2]
    assert s["gap"].tolist() == [2, 1, 0]
    assert s["spread"].tolist() == pytest.approx([1, 0.5, 0])
    assert s["n_phrasings"].tolist() == [4, 2, 2]
    assert s["n_seen"].tolist() == [2, 1, 1] and s["n_unseen"].tolist() == [2, 1, 1]


def test_a_fact_without_unseen_phrasings_has_no_unseen_gold():
    s = phrasing_summary(make_table({"size: cat": [(True, [1, 3]), (True, [4, 4])]}))
    # means 2 and 4: spread 1; no unseen phrasing: NaN
    assert s["gold_seen"].item() == 3 and math.isnan(s["gold_unseen"].item())
    assert s["spread"].item() == 1
    with pytest.raises(ValueError, match="both seen and unseen"):
        seen_unseen_gap(make_table({"size: cat": [(True, [1, 3]), (True, [4, 4])]}))


def test_seen_unseen_gap_by_hand():
    g = seen_unseen_gap(make_table(HAND))
    # gaps 2, 1, 0: mean 1; sample sd sqrt(((2-1)² + 0² + (0-1)²) / 2) = 1;
    # half-width t(0.95, df 2) · 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    half = T_95_DF2 / math.sqrt(3)
    assert g["gap"] == pytest.approx(1)
    assert g["low"] == pytest.approx(1 - half, abs=1e-5)
    assert g["high"] == pytest.approx(1 + half, abs=1e-5)
    assert g["within_noise"]
    assert g["gold_seen"] == pytest.approx((4 + 4 + 2) / 3)          # 10/3
    assert g["gold_unseen"] == pytest.approx((2 + 3 + 2) / 3)        # 7/3
    assert g["gold_seen"] - g["gold_unseen"] == pytest.approx(g["gap"])
    assert g["mean_spread"] == pytest.approx((1 + 0.5 + 0) / 3)      # 0.5
    assert g["n_facts"] == 3


def test_spread_change_by_hand():
    before, wider, mixed = make_table(HAND), make_table(WIDER), make_table(MIXED)
    # WIDER - HAND: spreads 2 - 1, 1.5 - 0.5, 1 - 0 = 1, 1, 1: mean 1, sd 0, interval [1, 1]
    up = spread_change(before, wider)
    assert (up["change"], up["low"], up["high"]) == pytest.approx((1, 1, 1))
    assert up["verdict"] == "widens" and up["n_facts"] == 3
    assert up["spread_before"] == pytest.approx(0.5)                  # (1 + 0.5 + 0) / 3
    assert up["spread_after"] == pytest.approx(1.5)                   # (2 + 1.5 + 1) / 3
    down = spread_change(wider, before)                               # -1, -1, -1
    assert down["change"] == pytest.approx(-1) and down["verdict"] == "narrows"
    # MIXED - HAND: 2 - 1 = 1, 0 - 0.5 = -0.5, 0 - 0 = 0: mean 1/6;
    # deviations 5/6, -2/3, -1/6: squares 25/36 + 16/36 + 1/36 = 42/36, / 2 = 21/36,
    # sd sqrt(21) / 6 = 0.763763; half-width 4.302653 · 0.763763 / sqrt(3) = 1.897283
    m = spread_change(before, mixed)
    half = T_95_DF2 * math.sqrt(21) / 6 / math.sqrt(3)
    assert m["change"] == pytest.approx(1 / 6)
    assert m["low"] == pytest.approx(1 / 6 - half, abs=1e-5)          # -1.730616
    assert m["high"] == pytest.approx(1 / 6 + half, abs=1e-5)         # 2.063949
    assert m["verdict"] == "no measurable difference"


def test_spread_change_refuses_tables_of_other_facts_or_phrasings():
    before = make_table(HAND)
    fewer = make_table({f: p for f, p in HAND.items() if f != "opposite: hot"})
    with pytest.raises(ValueError, match=r"not hold the same facts.*only before: \['opposite: hot'\]"):
        spread_change(before, fewer)
    one_sample = before[before["sample"] == 0]
    with pytest.raises(ValueError, match="not the same phrasings and samples"):
        spread_change(before, one_sample)
    with pytest.raises(ValueError, match=r"lacks the columns \['seen'\]"):
        spread_change(before, before.drop(columns="seen"))


def test_same_fact_shows_every_phrasing_of_one_fact():
    rows = same_fact(make_table(HAND), ("plus", "1 plus 2"))
    assert list(rows.columns) == ["question", "template", "seen", "sample", "answer", "total"]
    # phrasing by phrasing, samples together (the table itself is sample-major)
    assert rows["template"].tolist() == ["plus/0", "plus/0", "plus/1", "plus/1"]
    assert rows["sample"].tolist() == [0, 1, 0, 1]
    assert rows["seen"].tolist() == [True, True, False, False]
    assert rows["total"].tolist() == [4, 4, 2, 4]
    assert same_fact(make_table(HAND), "plus: 1 plus 2").equals(rows)
    with pytest.raises(ValueError, match="not in the table"):
        same_fact(make_table(HAND), ("plus", "2 plus 1"))


# --- on the real world ------------------------------------------------------------------------

def test_facts_with_both_really_have_seen_and_unseen_phrasings():
    world = World()
    facts = facts_with_both(world)
    assert facts and facts == sorted(facts) and facts == facts_with_both()
    assert len(set(facts)) == len(facts)
    assert {kind for kind, _ in facts} <= set(PHRASINGS)       # no unknown_animal, big_sum
    by_fact = {}
    for q in world.questions:
        by_fact.setdefault((q.kind, q.subject), []).append(q)
    for fact in facts:
        heldout = [q.heldout for q in by_fact[fact]]
        assert any(heldout) and not all(heldout), fact
        assert all(q.answerable for q in by_fact[fact])
    # every answerable fact that has both is found, none that has not
    expected = sorted(f for f, qs in by_fact.items() if qs[0].answerable
                      and 0 < sum(q.heldout for q in qs) < len(qs))
    assert facts == expected
    colours = facts_with_both(world, kinds=["colour"])
    assert colours and colours == [f for f in facts if f[0] == "colour"]
    assert facts_with_both(world, min_phrasings=len(PHRASINGS["colour"]) + 1) == []
    with pytest.raises(ValueError, match="big_sum"):
        facts_with_both(world, kinds=["big_sum"])


def test_phrasing_questions_ask_every_phrasing_of_each_fact():
    facts = facts_with_both(kinds=["colour", "plus"])[:2] + facts_with_both(kinds=["plus"])[:1]
    questions = phrasing_questions(facts)
    assert questions == phrasing_questions(facts)
    expected = [(kind, subject, f"{kind}/{i}") for kind, subject in facts
                for i in range(len(PHRASINGS[kind]))]
    assert [(q.kind, q.subject, q.template) for q in questions] == expected
    assert any(q.heldout for q in questions) and not all(q.heldout for q in questions)
    with pytest.raises(ValueError, match="not an answerable fact"):
        phrasing_questions([("colour", "unicorn")])


# --- on a tiny untrained model ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_policy():
    """An untrained one-layer GPT-2 with a tokenizer trained on a few dialogues."""
    from tiny_models import tiny_gpt

    from rlhf_lab.tokenizer import train_tokenizer
    from rlhf_lab.world import format_dialogue

    texts = [format_dialogue(q.text, "A cat is grey. I do not know.")
             for q in World().split("train")[:20]] * 4
    tok = train_tokenizer(texts, vocab_size=300)
    return tiny_gpt(tok, n_positions=96), tok


def test_answer_phrasings_samples_with_the_course_seeds_and_grades_each_answer(tiny_policy):
    policy, tok = tiny_policy
    questions = phrasing_questions(facts_with_both(kinds=["colour"])[:1])[:3]
    table = answer_phrasings(policy, tok, questions, k=2, progress=False, max_new_tokens=6)
    assert len(table) == 3 * 2
    assert list(table.columns) == ["fact", "template", "seen", *COLUMNS]
    assert table["sample"].tolist() == [0, 0, 0, 1, 1, 1]
    assert table["template"].tolist() == [q.template for q in questions] * 2
    assert table["seen"].tolist() == [not q.heldout for q in questions] * 2
    assert set(table["fact"]) == {f"{questions[0].kind}: {questions[0].subject}"}
    for j in range(2):                  # answer j is sample_answers with seed SEEDS[j]
        answers, _ = sample_answers(policy, tok, questions, SEEDS[j], max_new_tokens=6)
        assert table.loc[table["sample"] == j, "answer"].tolist() == answers
    for row, q in zip(table.itertuples(), questions * 2):
        assert row.total == gold_score(q, row.answer).total
    assert len(phrasing_summary(table)) == 1
    with pytest.raises(ValueError, match="k = 9"):
        answer_phrasings(policy, tok, questions, k=9)
