"""Class mode (chapter 09): a folder of raters' files validated and merged; consensus, Fleiss'
kappa and each rater's bias against values worked out by hand; planted biases recovered."""
import json
import math
import random

import pytest

from rlhf_lab import feedback
from rlhf_lab.class_ratings import (
    ClassFolderError,
    class_fleiss_kappa,
    consensus,
    leave_one_out,
    load_class_folder,
    majority_label,
    pairwise_frame,
    agreement_with_gold,
    gold_choice,
    rater_bias,
    round_ratings,
)
from rlhf_lab.raters import CLASS_PROFILES, SimulatedRater, class_of, simulate_class
from rlhf_lab.scripted import STYLES, make_answer
from rlhf_lab.world import World

PROMPT = "what color is a cat?"
GOOD = "A cat is grey."                       # 4 words; sorted order: GOOD < WRONG < WARM < RUDE
WRONG = "A cat is red."                       # 4 words
WARM = "Good question! A cat is grey."        # 6 words
RUDE = "Ugh. A cat is grey."                  # 5 words


def scripted_pairs(n, seed):
    """Pairs of scripted answers (two random styles) to random questions of the world."""
    rng = random.Random(seed)
    pairs = []
    for question in rng.sample(World().split("train"), n):
        a, b = (make_answer(question, style, rng) for style in rng.sample(STYLES, 2))
        if a != b:
            pairs.append({"prompt": question.text, "answer_a": a, "answer_b": b,
                          "model": "scripted"})
    return pairs


def rate(rater, answer_a, answer_b, choice, prompt=PROMPT):
    """One pair record as `rater` saw it: answer_a on the left."""
    return feedback.pair_record(rater, prompt, answer_a, answer_b, choice, "sft")


def lines_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- reading a folder ------------------------------------------------------------------------

@pytest.fixture
def small_class(tmp_path):
    """Four simulated students, each rating 5 of 8 pairs, in tmp_path/ratings."""
    folder = tmp_path / "ratings"
    paths = simulate_class(folder, scripted_pairs(8, seed=1), class_of(4, seed=1), per_rater=5,
                           seed=1)
    return folder, paths


def test_the_merge_reads_back_exactly_what_simulate_class_wrote(small_class):
    folder, paths = small_class
    result = load_class_folder(folder)
    assert [p.name for p in paths] == ["typical-01.jsonl", "careful-02.jsonl", "hasty-03.jsonl",
                                       "likes-long-04.jsonl"]
    written = {(r["rater"], r["pair_id"], r["answer_a"], r["answer_b"], r["choice"])
               for path in paths for r in lines_of(path)}
    merged = set(result.frame[["rater", "pair_id", "answer_a", "answer_b", "choice"]]
                 .itertuples(index=False, name=None))
    assert merged == written and len(written) == 4 * 5
    assert result.frame.groupby("rater").size().tolist() == [5, 5, 5, 5]
    assert not result.frame.duplicated(["rater", "pair_id"]).any()
    assert result.files.to_dict("list") == {
        "file": sorted(p.name for p in paths), "rater": sorted(p.stem for p in paths),
        "ratings": [5] * 4, "status": ["ok"] * 4, "problem": [""] * 4}
    assert result.problems == []
    # each student saw the pairs in an order of their own, answers on the pairs' sides
    rated = [tuple(r["pair_id"] for r in lines_of(path)) for path in paths]
    assert len(set(rated)) == 4
    pairs = {feedback.pair_id(p["prompt"], p["answer_a"], p["answer_b"]): p
             for p in scripted_pairs(8, seed=1)}
    assert all(pairs[row.pair_id]["answer_a"] == row.answer_a for row in result.frame.itertuples())
    # oriented_choice: the choice as if the answers had been shown in sorted order
    for row in result.frame.itertuples():
        flipped = row.answer_a > row.answer_b and row.choice != "tie"
        assert row.oriented_choice == ({"a": "b", "b": "a"}[row.choice] if flipped else row.choice)


def test_the_folder_the_class_server_writes_is_read_as_it_is(tmp_path):
    import asyncio

    from rlhf_lab.class_server import ClassRoom

    pairs = scripted_pairs(4, seed=4)
    clicks = {"ann": ["a", "b", "skip", "tie"], "bob": ["b", "b"]}

    async def the_class():
        room = ClassRoom(pairs, tmp_path, token="class-token")
        for name, choices in clicks.items():
            state = await room.start(name, "")
            session = room.session(state["session"])
            for choice in choices:
                state = await room.rate(session, state["pair"]["pair_id"], choice)
        await room.undo(session)                                 # bob takes back his second b
    asyncio.run(the_class())
    assert (tmp_path / ".claims").is_dir()                       # the app's name claims
    result = load_class_folder(tmp_path)
    assert result.files[["file", "ratings", "status"]].values.tolist() == [
        ["ann.jsonl", 3, "ok"], ["bob.jsonl", 1, "ok"]]
    ids = [feedback.pair_id(p["prompt"], p["answer_a"], p["answer_b"]) for p in pairs]
    assert result.frame[["rater", "pair_id", "choice"]].values.tolist() == [
        ["ann", ids[0], "a"], ["ann", ids[1], "b"], ["ann", ids[3], "tie"], ["bob", ids[0], "b"]]


def test_a_re_rating_replaces_the_earlier_one_and_undo_removes_it(small_class):
    folder, paths = small_class
    first = lines_of(paths[0])[0]
    new_choice = "b" if first["choice"] == "a" else "a"
    writer = feedback.RatingsWriter(folder, first["rater"])
    writer.append(rate(first["rater"], first["answer_a"], first["answer_b"], new_choice,
                       first["prompt"]))
    writer.append(feedback.undo_record(first["rater"], lines_of(paths[0])[1]["id"]))
    frame = load_class_folder(folder).frame
    mine = frame[frame["rater"] == first["rater"]].set_index("pair_id")
    assert len(mine) == 4                                   # 5 rated, 1 re-rated, 1 undone
    assert mine.loc[first["pair_id"], "choice"] == new_choice
    assert lines_of(paths[0])[1]["pair_id"] not in mine.index


def test_broken_files_are_refused_and_reported_while_the_others_merge(small_class):
    folder, paths = small_class
    lines = paths[1].read_text(encoding="utf-8").splitlines(keepends=True)
    paths[1].write_text(lines[0] + lines[1] + '{"schema": 1, "kind": "pair"\n' + lines[2],
                        encoding="utf-8")
    (folder / "zed.jsonl").write_text(paths[0].read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "two words.jsonl").write_text("", encoding="utf-8")
    result = load_class_folder(folder)
    files = result.files.set_index("file")
    assert files.loc["careful-02.jsonl", "status"] == "refused"
    assert files.loc["careful-02.jsonl", "problem"].startswith("line 3: not valid JSON")
    assert files.loc["zed.jsonl", "status"] == "refused"
    assert "holds records by ['typical-01']" in files.loc["zed.jsonl", "problem"]
    assert files.loc["two words.jsonl", "status"] == "refused"
    assert "'two words' is not a rater name" in files.loc["two words.jsonl", "problem"]
    assert files.loc[["careful-02.jsonl", "zed.jsonl", "two words.jsonl"], "ratings"].tolist() \
        == [0, 0, 0]
    assert sorted(result.frame["rater"].unique()) == ["hasty-03", "likes-long-04", "typical-01"]
    assert len(result.frame) == 15
    assert len(result.problems) == 3
    assert any(p.startswith(f"{paths[1]} (refused): line 3: not valid JSON")
               for p in result.problems)


def test_hostile_files_are_refused_one_by_one_and_the_merge_goes_on(small_class):
    folder, paths = small_class
    first = json.loads(paths[1].read_text(encoding="utf-8").splitlines()[0])
    paths[1].write_text(json.dumps(first | {"kind": []}) + "\n", encoding="utf-8")
    paths[2].write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    twin = json.loads(paths[3].read_text(encoding="utf-8").splitlines()[0])
    with open(paths[3], "a", encoding="utf-8") as file:
        file.write(json.dumps(twin | {"choice": "tie" if twin["choice"] != "tie" else "a"}) + "\n")
    result = load_class_folder(folder)
    files = result.files.set_index("rater")["problem"]
    assert files[paths[1].stem].startswith("line 1: kind is []")
    assert files[paths[2].stem].startswith("line 1: JSON nested too deeply")
    assert "also the id of the different record on line 1" in files[paths[3].stem]
    assert sorted(result.frame["rater"].unique()) == [paths[0].stem]


def test_a_last_line_cut_by_a_crash_is_noted_not_refused_and_no_file_is_changed(small_class):
    folder, paths = small_class
    with open(paths[2], "ab") as file:
        file.write(b'{"schema": 1, "id": "ab')          # the app crashed mid-write
    (folder / "zed.jsonl").write_text("not json\n", encoding="utf-8")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    result = load_class_folder(folder)
    row = result.files.set_index("file").loc["hasty-03.jsonl"]
    assert row["status"] == "ok" and row["ratings"] == 5
    assert row["problem"].startswith("line 6: the last line has no newline")
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert not list(folder.glob("*.partial"))


def test_missing_empty_and_unusable_folders_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*the class app writes to"):
        load_class_folder(tmp_path / "nowhere")
    with pytest.raises(ClassFolderError, match=r"holds no ratings files \(\*\.jsonl\)"
                                                r".*make rate"):
        load_class_folder(tmp_path)
    (tmp_path / "ann.jsonl").write_text("oops\n", encoding="utf-8")
    with pytest.raises(ClassFolderError, match=r"(?s)Every ratings file.*ann.jsonl \(refused\): "
                                                r"line 1: not valid JSON.*make rate"):
        load_class_folder(tmp_path)
    (tmp_path / "ann.jsonl").unlink()
    feedback.RatingsWriter(tmp_path, "bob").append(rate("bob", GOOD, RUDE, "skip"))
    with pytest.raises(ClassFolderError, match="no pairwise ratings yet"):
        load_class_folder(tmp_path)


# --- consensus and Fleiss' kappa -------------------------------------------------------------

def toy_frame():
    """Three raters, four pairs, some shown in the other order. By hand, in sorted order
    (canonical a, b), with each rater's click as shown on screen:

    pair GOOD|RUDE:  ann (GOOD,RUDE) a -> a;  bob (RUDE,GOOD) b -> a;  cat (RUDE,GOOD) a -> b
    pair WRONG|WARM: ann (WARM,WRONG) a -> b; bob (WRONG,WARM) tie;    cat (WARM,WRONG) b -> a
    pair GOOD|WRONG: ann (WRONG,GOOD) b -> a
    pair GOOD|WARM:  ann (GOOD,WARM) a -> a;  bob (GOOD,WARM) b -> b
    """
    return pairwise_frame([
        rate("ann", GOOD, RUDE, "a"), rate("bob", RUDE, GOOD, "b"), rate("cat", RUDE, GOOD, "a"),
        rate("ann", WARM, WRONG, "a"), rate("bob", WRONG, WARM, "tie"),
        rate("cat", WARM, WRONG, "b"),
        rate("ann", WRONG, GOOD, "b"),
        rate("ann", GOOD, WARM, "a"), rate("bob", GOOD, WARM, "b")])


def test_majority_label_calls_a_draw_a_tie():
    assert majority_label(2, 1, 0) == "a"
    assert majority_label(0, 3, 2) == "b"
    assert majority_label(1, 1, 1) == "tie"
    assert majority_label(2, 2, 0) == "tie"
    assert majority_label(2, 0, 2) == "tie"


def test_consensus_by_hand_on_three_raters():
    table = consensus(toy_frame()).set_index(["answer_a", "answer_b"])   # in sorted order
    columns = ["n_raters", "n_a", "n_b", "n_tie", "majority", "majority_share"]
    assert table.loc[(GOOD, RUDE), columns].tolist() == [3, 2, 1, 0, "a", pytest.approx(2 / 3)]
    # one vote each: a draw, so "tie", which one rater of three gave
    assert table.loc[(WRONG, WARM), columns].tolist() == [3, 1, 1, 1, "tie", pytest.approx(1 / 3)]
    assert table.loc[(GOOD, WRONG), columns].tolist() == [1, 1, 0, 0, "a", 1.0]
    # a against b with no tie vote: "tie", which nobody gave
    assert table.loc[(GOOD, WARM), columns].tolist() == [2, 1, 1, 0, "tie", 0.0]
    assert set(table["prompt"]) == {PROMPT} and len(table) == 4


def test_a_round_keeps_only_the_ratings_of_its_own_pairs():
    """A class folder holds every round's ratings; a round reads those of its pairs only,
    matched whatever order the pair was shown in."""
    frame = toy_frame()
    this_round = [{"prompt": PROMPT, "answer_a": RUDE, "answer_b": GOOD},
                  {"prompt": PROMPT, "answer_a": GOOD, "answer_b": WRONG}]
    kept = round_ratings(frame, this_round)
    assert sorted(kept.rater) == ["ann", "ann", "bob", "cat"]        # 3 on GOOD|RUDE, 1 more
    assert round_ratings(frame, []).empty


def test_agreement_with_gold_by_hand():
    """Gold totals: GOOD 4, RUDE 3.5 (one put-down), WRONG 3, WARM 4. In sorted order the
    gold choices are GOOD|RUDE a, WRONG|WARM b, GOOD|WRONG a, GOOD|WARM tie. From the
    oriented clicks of `toy_frame`: ann a, b, a, a -> 3 of 4; bob a, tie, b -> 1 of 3;
    cat b, a -> 0 of 2; the consensus a, tie, a, tie -> 3 of 4."""
    assert gold_choice(PROMPT, GOOD, RUDE) == "a" and gold_choice(PROMPT, RUDE, GOOD) == "b"
    assert gold_choice(PROMPT, GOOD, WARM) == "tie"
    table = agreement_with_gold(toy_frame()).set_index("rater")
    assert table.agreement.to_dict() == {"ann": 0.75, "bob": pytest.approx(1 / 3), "cat": 0.0,
                                         "class consensus": 0.75}
    assert table.ratings.to_dict() == {"ann": 4, "bob": 3, "cat": 2, "class consensus": 4}
    # ann: labels a, b, a, a against gold a, b, a, tie: p_o = 3/4, p_e = (3*2 + 1*1)/16 = 7/16
    assert table.kappa["ann"] == pytest.approx((3 / 4 - 7 / 16) / (1 - 7 / 16))


def frame_from_labels(labels_per_pair):
    """One pair per list of labels; rater r<i> gives the i-th label, answers in sorted order."""
    return pairwise_frame([rate(f"r{i}", "x", "y", label, prompt=f"question {number}?")
                           for number, labels in enumerate(labels_per_pair)
                           for i, label in enumerate(labels)])


def test_class_fleiss_kappa_by_hand_when_every_pair_has_three_raters():
    # rows (a, b, tie): [3,0,0], [2,1,0], [0,3,0], [1,1,1]; n = 3 raters
    # P_i = (sum n_ij^2 - 3) / 6: 1, 1/3, 1, 0          -> P = (7/3) / 4 = 7/12
    # p_j: a 6/12, b 5/12, tie 1/12 -> P_e = (36 + 25 + 1) / 144 = 31/72
    # kappa = (7/12 - 31/72) / (1 - 31/72) = (11/72) / (41/72) = 11/41
    frame = frame_from_labels([["a", "a", "a"], ["a", "b", "a"], ["b", "b", "b"],
                               ["tie", "a", "b"]])
    kappa, items, raters = class_fleiss_kappa(frame)
    assert (items, raters) == (4, 3)
    assert kappa == pytest.approx(11 / 41)


def test_class_fleiss_kappa_keeps_k_raters_on_the_pairs_that_have_them():
    # raters per pair: 3, 3, 3, 2, 5. k x (pairs with >= k raters): k=2: 2*5 = 10,
    # k=3: 3*4 = 12, k=4: 4*1 = 4, k=5: 5*1 = 5  -> k = 3 on 4 pairs; the 2-rater pair is out.
    # The 5-rater pair (a, a, a, a, b) keeps 3 ratings at random: [3,0,0] or [2,1,0].
    # with [3,0,0]: P = (1 + 1/3 + 1 + 1)/4 = 5/6; p: a 8/12, b 4/12 -> P_e = 5/9;
    #               kappa = (5/6 - 5/9) / (4/9) = 5/8
    # with [2,1,0]: P = (1 + 1/3 + 1 + 1/3)/4 = 2/3; p: a 7/12, b 5/12 -> P_e = 74/144;
    #               kappa = (96/144 - 74/144) / (70/144) = 11/35
    frame = frame_from_labels([["a", "a", "a"], ["a", "b", "a"], ["b", "b", "b"], ["a", "b"],
                               ["a", "a", "a", "b", "a"]])
    results = {seed: class_fleiss_kappa(frame, seed=seed) for seed in range(12)}
    assert {(items, k) for _, items, k in results.values()} == {(4, 3)}
    kappas = {round(kappa, 12) for kappa, _, _ in results.values()}
    assert kappas == {round(5 / 8, 12), round(11 / 35, 12)}       # both subsamples occur
    assert class_fleiss_kappa(frame, seed=3) == results[3]          # same seed, same answer
    # a draw between k = 2 (2*4 = 8) and k = 4 (4*2 = 8) keeps more pairs: k = 2
    draw = frame_from_labels([["a", "a", "b", "b"], ["a", "a", "a", "a"], ["a", "b"], ["b", "b"]])
    assert class_fleiss_kappa(draw)[1:] == (4, 2)


def test_class_fleiss_kappa_needs_a_pair_with_two_raters():
    with pytest.raises(ValueError, match="at least two raters"):
        class_fleiss_kappa(frame_from_labels([["a"], ["b"]]))


# --- each rater against the others -----------------------------------------------------------

def test_leave_one_out_excludes_the_rater():
    # ann a, bob b, cat a on one pair: with everyone, the majority is "a" and ann and cat
    # agree with it. Without the rater: ann sees bob b + cat a, a draw -> tie; bob sees a, a
    # -> a; cat sees a + b -> tie. Nobody agrees with the others' majority.
    frame = pairwise_frame([rate("ann", GOOD, RUDE, "a"), rate("bob", GOOD, RUDE, "b"),
                            rate("cat", GOOD, RUDE, "a"), rate("ann", GOOD, WRONG, "a")])
    assert consensus(frame).set_index("answer_b").loc[RUDE, "majority"] == "a"   # GOOD
    measured = leave_one_out(frame)
    assert measured[["rater", "n_others", "others_oriented"]].fillna("-").values.tolist() == [
        ["ann", 2, "tie"], ["bob", 2, "a"], ["cat", 2, "tie"], ["ann", 0, "-"]]
    bias = rater_bias(frame).set_index("rater")
    assert bias["agreement"].tolist() == [0.0, 0.0, 0.0]
    assert bias.loc["ann", ["ratings", "compared"]].tolist() == [2, 1]   # solo pair skipped


def test_rater_bias_by_hand():
    # Others' majority (leave_one_out), in sorted order, then as the rater saw the pair:
    # ann: GOOD|RUDE bob a + cat b -> tie; WRONG|WARM bob tie + cat a -> tie; GOOD|WRONG no one;
    #      GOOD|WARM bob b -> b (shown the same way: b)
    # bob: GOOD|RUDE ann a + cat b -> tie; WRONG|WARM ann b + cat a -> tie; GOOD|WARM ann a -> a
    # cat: GOOD|RUDE ann a + bob a -> a, which cat saw as B; WRONG|WARM ann b + bob tie -> tie
    bias = rater_bias(toy_frame()).set_index("rater")
    assert bias["ratings"].tolist() == [4, 3, 2]
    assert bias["compared"].tolist() == [3, 3, 2]
    # ann: mine a, b, a vs theirs tie, tie, b: p_o = 0, p_e = (b: 1*1)/9 -> kappa = -1/8
    # bob: mine a, tie, b vs theirs tie, tie, a: p_o = 1/3, p_e = (a: 1*1 + tie: 1*2)/9 = 1/3 -> 0
    # cat: mine b, a vs theirs a, tie: p_o = 0, p_e = (a: 1*1)/4 -> kappa = -1/3
    assert bias["agreement"].tolist() == pytest.approx([0, 1 / 3, 0])
    assert bias["kappa"].tolist() == pytest.approx([-1 / 8, 0, -1 / 3])
    # share of A among A-or-B clicks as shown: ann a, a, b, a; bob b, b; cat a, b
    assert bias["share_a"].tolist() == pytest.approx([3 / 4, 0, 1 / 2])
    assert bias["tie_share"].tolist() == pytest.approx([0, 1 / 3, 0])
    # position and length: only pairs where neither the rater nor the others said tie:
    # ann GOOD|WARM: ann A, others B (the longer WARM)    -> position 1 - 0, length 0 - 1
    # bob GOOD|WARM: bob B (longer), others A             -> position 0 - 1, length 1 - 0
    # cat GOOD|RUDE: cat A (RUDE, longer), others B       -> position 1 - 0, length 1 - 0
    assert bias["position_bias"].tolist() == pytest.approx([1, -1, 1])
    assert bias["length_bias"].tolist() == pytest.approx([-1, 1, 1])


def test_rater_bias_is_nan_where_there_is_nothing_to_measure():
    frame = pairwise_frame([rate("ann", GOOD, WARM, "tie"), rate("bob", GOOD, RUDE, "a")])
    bias = rater_bias(frame).set_index("rater")
    assert bias["compared"].tolist() == [0, 0]
    assert bias[["agreement", "kappa", "position_bias", "length_bias"]].isna().all().all()
    assert math.isnan(bias.loc["ann", "share_a"]) and bias.loc["ann", "tie_share"] == 1.0


def test_rater_bias_recovers_planted_biases(tmp_path):
    # Ten students (class_of(10, seed=0)) each rate all 58 different pairs of 60 scripted ones.
    # Measured with this seed: share_a of likes-a-05 0.78 vs at most 0.62 for the others;
    # length_bias of likes-long-04 0.29 vs at most 0.13; agreement of the careful students
    # 0.91-0.95 vs 0.69-0.72 for the hasty ones.
    pairs = scripted_pairs(60, seed=0)
    simulate_class(tmp_path, pairs, class_of(10, seed=0), per_rater=58, seed=0)
    bias = rater_bias(load_class_folder(tmp_path).frame).set_index("rater")
    assert bias["compared"].eq(58).all()
    others = bias.drop("likes-a-05")
    assert bias.loc["likes-a-05", "share_a"] > others["share_a"].max() + 0.1
    assert bias.loc["likes-a-05", "position_bias"] > others["position_bias"].max() + 0.1
    assert bias.loc["likes-long-04", "length_bias"] > 0.2
    assert bias.loc["likes-long-04", "length_bias"] > bias.drop("likes-long-04")[
        "length_bias"].max() + 0.1
    careful = bias.loc[["careful-02", "careful-08"], "agreement"]
    hasty = bias.loc[["hasty-03", "hasty-10"], "agreement"]
    assert careful.min() > hasty.max() + 0.15
    assert bias.loc["unsure-07", "tie_share"] > bias.drop("unsure-07")["tie_share"].max()


# --- a simulated class -----------------------------------------------------------------------

def test_class_of_gives_every_kind_of_student_a_valid_name():
    raters = class_of(10, seed=2)
    names = [r.name for r in raters]
    assert names[:5] == ["typical-01", "careful-02", "hasty-03", "likes-long-04", "likes-a-05"]
    assert len(set(names)) == 10 and all(feedback.check_rater_name(n) for n in names)
    assert {n.rsplit("-", 1)[0] for n in names} == set(CLASS_PROFILES)
    assert raters[4].position_bias > 0 and raters[3].length_bias > 0
    assert raters[1].temperature < raters[0].temperature < raters[2].temperature
    assert raters[6].tie_margin > raters[0].tie_margin
    # the seed changes the coin flips, not the class
    assert [r.rng.random() for r in class_of(3, 1)] != [r.rng.random() for r in class_of(3, 2)]
    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        class_of(0)


def test_simulate_class_refuses_existing_files_and_bad_counts(tmp_path):
    pairs = scripted_pairs(4, seed=3)
    raters = [SimulatedRater("ann"), SimulatedRater("bob")]
    with pytest.raises(ValueError, match="per_rater must be a whole number from 1 to"):
        simulate_class(tmp_path, pairs + pairs, raters, per_rater=5)   # 4 different pairs
    with pytest.raises(ValueError, match="share a name"):
        simulate_class(tmp_path, pairs, [SimulatedRater("ann"), SimulatedRater("ann")], 2)
    simulate_class(tmp_path, pairs + pairs, raters, per_rater=4)
    assert [len(lines_of(tmp_path / f"{n}.jsonl")) for n in ("ann", "bob")] == [4, 4]
    assert {r["model"] for r in lines_of(tmp_path / "ann.jsonl")} == {"scripted"}
    with pytest.raises(FileExistsError, match="ann.jsonl.*empty folder"):
        simulate_class(tmp_path, pairs, raters, per_rater=1)
