"""Agreement between raters against values worked out by hand."""
import math

import pytest

from rlhf_lab.agreement import (agreement_table, cohens_kappa, fleiss_kappa,
                                oriented_choice, percent_agreement)
from rlhf_lab.feedback import RatingsWriter, pair_record, ratings_frame

# Ten pairs rated by two raters, A (rows) and B (columns):
#
#              B: a   B: b   B: tie | A total
#     A: a       4      1      0    |   5
#     A: b       1      2      0    |   3
#     A: tie     0      1      1    |   2
#     B total    5      4      1    |  10
#
# p_o = (4 + 2 + 1) / 10                    = 0.70   (the diagonal)
# p_e = (5*5 + 3*4 + 2*1) / 10**2 = 39/100  = 0.39   (row total x column total, per label)
# kappa = (p_o - p_e) / (1 - p_e) = 0.31 / 0.61 = 0.508196...
RATER_A = ["a"] * 5 + ["b"] * 3 + ["tie"] * 2
RATER_B = ["a", "a", "a", "a", "b"] + ["a", "b", "b"] + ["b", "tie"]
HAND_KAPPA = 0.31 / 0.61


def test_percent_agreement_and_kappa_match_the_hand_computed_table():
    assert percent_agreement(RATER_A, RATER_B) == pytest.approx(0.70)
    assert cohens_kappa(RATER_A, RATER_B) == pytest.approx(HAND_KAPPA)
    assert cohens_kappa(RATER_B, RATER_A) == pytest.approx(HAND_KAPPA)   # symmetric


@pytest.mark.parametrize("a, b, kappa", [
    (["a", "b", "tie"], ["a", "b", "tie"], 1.0),          # perfect agreement
    (["a", "a", "b", "b"], ["a", "b", "a", "b"], 0.0),    # p_o = p_e = 0.5: only chance
    (["a", "b"], ["b", "a"], -1.0),                       # p_o = 0, p_e = 0.5
])
def test_kappa_at_its_landmarks(a, b, kappa):
    assert cohens_kappa(a, b) == pytest.approx(kappa)


def test_kappa_is_undefined_when_both_raters_always_give_the_same_label():
    assert math.isnan(cohens_kappa(["a"] * 4, ["a"] * 4))
    assert percent_agreement(["a"] * 4, ["a"] * 4) == 1.0


def test_labels_must_cover_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        cohens_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one item"):
        percent_agreement([], [])


def test_fleiss_kappa_by_hand():
    # 3 items, 3 raters each; columns a, b, tie.
    # P_i: (9-3)/6 = 1, (4+1-3)/6 = 1/3, (1+4-3)/6 = 1/3  -> P = 5/9
    # p_j: a 5/9, b 2/9, tie 2/9  -> P_e = (25 + 4 + 4)/81 = 11/27
    # kappa = (5/9 - 11/27) / (1 - 11/27) = (4/27) / (16/27) = 0.25
    assert fleiss_kappa([[3, 0, 0], [2, 1, 0], [0, 1, 2]]) == pytest.approx(0.25)


def test_fleiss_kappa_of_two_raters_is_scotts_pi():
    # Scott's pi of the ten pairs above uses pooled label shares: a 10/20, b 7/20, tie 3/20,
    # p_e = 0.25 + 0.1225 + 0.0225 = 0.395, pi = (0.70 - 0.395) / (1 - 0.395) = 0.50413...
    labels = ("a", "b", "tie")
    counts = [[(x == k) + (y == k) for k in labels] for x, y in zip(RATER_A, RATER_B)]
    assert fleiss_kappa(counts) == pytest.approx(0.305 / 0.605)
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[2, 0], [1, 0]])


def test_oriented_choice_puts_both_orders_the_same_way():
    assert oriented_choice("x", "y", "a") == "a"
    assert oriented_choice("y", "x", "b") == "a"      # the same judgement, shown swapped
    assert oriented_choice("y", "x", "tie") == "tie"


def test_agreement_table_on_rating_files(tmp_path):
    prompt = "what color is a cat?"
    ann, bob, cid = (RatingsWriter(tmp_path, name) for name in ("ann", "bob", "cid"))
    swap = {"a": "b", "b": "a", "tie": "tie"}
    for i, (x, y) in enumerate(zip(RATER_A, RATER_B)):
        first, second = f"answer {i} x", f"answer {i} y"
        ann.append(pair_record("ann", prompt, first, second, x, "sft"))
        if i % 2:   # bob saw every other pair the other way round
            bob.append(pair_record("bob", prompt, second, first, swap[y], "sft"))
        else:
            bob.append(pair_record("bob", prompt, first, second, y, "sft"))
    bob.append(pair_record("bob", prompt, "only bob", "rated this", "a", "sft"))
    ann.append(pair_record("ann", prompt, "skipped", "pair", "skip", "sft"))
    bob.append(pair_record("bob", prompt, "skipped", "pair", "a", "sft"))
    cid.append(pair_record("cid", prompt, "no one", "else", "a", "sft"))
    table = agreement_table(ratings_frame(tmp_path)).set_index(["rater_1", "rater_2"])
    assert table.loc[("ann", "bob"), "n"] == 10                     # skip and solo pairs out
    assert table.loc[("ann", "bob"), "agreement"] == pytest.approx(0.70)
    assert table.loc[("ann", "bob"), "kappa"] == pytest.approx(HAND_KAPPA)
    assert table.loc[("ann", "cid"), "n"] == 0
    assert math.isnan(table.loc[("ann", "cid"), "kappa"])
    assert len(table) == 3
