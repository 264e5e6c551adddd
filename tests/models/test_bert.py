"""georefseg's own BERT encoder and WordPiece tokenizer give what transformers gives."""

from __future__ import annotations

import shutil

import pytest
import torch

from georefseg.errors import ModelError
from georefseg.models.bert import BertEncoder, WordPiece
from georefseg.models.text import MAX_TOKENS, minilm_dir

TEXTS = ["the large storage tank near the river", "Ünïcödé café—200 m north!", "tank " * 50, "a",
         "THE   Ship's deck, #3 (left)"]


def test_ids_and_features_are_transformers_own(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_dir()
    theirs = AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding="max_length", truncation=True,
                                                        max_length=MAX_TOKENS, return_tensors="pt")
    ids, mask = WordPiece(folder)(TEXTS, MAX_TOKENS)
    assert torch.equal(ids, theirs["input_ids"]) and torch.equal(mask, theirs["attention_mask"])
    only_vocab = tmp_path / "vocab_only"  # a BERT folder without tokenizer.json
    only_vocab.mkdir()
    shutil.copy(folder / "vocab.txt", only_vocab / "vocab.txt")
    assert torch.equal(WordPiece(only_vocab)(TEXTS, MAX_TOKENS)[0], ids)
    with torch.no_grad():
        want = AutoModel.from_pretrained(str(folder)).eval()(input_ids=ids, attention_mask=mask)[0]
        got = BertEncoder.from_folder(folder)(ids, mask)
    real = mask.bool()
    assert (got - want)[real].abs().max() < 1e-5  # the words' features, which the models read
    assert (got - want).abs().max() < 1e-4  # padding positions too


def test_a_folder_that_is_not_bert_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(ModelError, match="is not a BERT encoder"):
        BertEncoder.from_folder(tmp_path)
    with pytest.raises(ModelError, match="has no tokenizer"):
        WordPiece(tmp_path)
