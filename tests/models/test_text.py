"""The text encoder loads from the installed package with the network switched off."""

from __future__ import annotations

import socket

import pytest
import torch

from georefseg.models.text import MAX_TOKENS, MiniLMEncoder, load_tokenizer, minilm_dir, tokenize


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_minilm_encodes_offline(no_network):
    load_tokenizer.cache_clear()
    enc = MiniLMEncoder()
    batch = enc.encode(["the large storage tank near the river", "a ship"])
    assert batch.features.shape == (2, MAX_TOKENS, 384)
    # similar expressions are closer than unrelated ones
    a, b, c = (enc.encode([t]).features[0, 0] for t in ("the oil tank", "the storage tank", "a red car"))
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0)
    assert (minilm_dir() / "model.safetensors").is_file()


def test_tokenisation_matches_rmsin_preparation():
    batch = tokenize(["The large storage tank near the river"])
    ids = batch.input_ids[0].tolist()
    assert ids[0] == 101 and 102 in ids  # [CLS] … [SEP]
    n = int(batch.attention_mask.sum())
    assert ids[n - 1] == 102 and all(i == 0 for i in ids[n:])  # zero-padded to 20
    assert len(ids) == MAX_TOKENS
    long = tokenize(["tank " * 50])
    assert long.input_ids.shape[1] == MAX_TOKENS and long.input_ids[0, -1] == 102
