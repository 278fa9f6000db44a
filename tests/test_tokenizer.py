from rlhf_lab.tokenizer import EOS, PAD, load_tokenizer, train_tokenizer

TEXTS = ["User: what colour is a frog?\nAssistant: A frog is green."] * 30 + ["Cats say meow."] * 30


def test_train_save_reload(tmp_path):
    tok = train_tokenizer(TEXTS, 300)
    assert tok.eos_token == EOS and tok.pad_token == PAD and tok.padding_side == "left"
    assert tok.eos_token_id != tok.pad_token_id
    text = "User: what colour is a frog?\nAssistant: A frog is green."
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2          # merges learned: far fewer tokens than bytes
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again(text).input_ids == ids and again.pad_token_id == tok.pad_token_id


def test_unseen_characters_still_encode():
    tok = train_tokenizer(TEXTS, 300)
    text = "Zebras? ü ∑"
    assert tok.decode(tok(text).input_ids) == text


def test_left_padding_batches():
    tok = train_tokenizer(TEXTS, 300)
    enc = tok(["Cats say meow.", "A frog"], padding=True)
    assert enc["input_ids"][1][0] == tok.pad_token_id and enc["attention_mask"][1][0] == 0
