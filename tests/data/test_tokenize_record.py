"""TokenizeConfig reads user input strictly (an unknown key is refused naming the nearest field) and a stored
tokenization's config.json through `from_record`, which strips only the keys tokenizing adds (#24 item 3)."""
from __future__ import annotations

import pytest

from mistudio_core.data.tokenize import RECORD_KEYS, TokenizeConfig, load_tokenized, tokenize_dataset
from mistudio_core.platform.errors import ValidationError
from test_tokenize import tok_store  # noqa: F401  (fixture)
from tiny_tokenizer import TINY_MODEL_ID


def test_input_is_strict_and_a_stored_record_reads_back(tok_store):  # noqa: F811
    store, did = tok_store
    cfg = TokenizeConfig(context_size=16, min_doc_chars=2)
    tokenize_dataset(store, did, TINY_MODEL_ID, cfg)
    stored = load_tokenized(store, did, TINY_MODEL_ID).config
    assert TokenizeConfig.from_record(stored) == cfg and set(RECORD_KEYS) <= set(stored)
    with pytest.raises(ValidationError, match="'context_sise' \\(did you mean 'context_size'\\?\\)"):
        TokenizeConfig.from_dict({"context_sise": 64})
    with pytest.raises(ValidationError, match="Unknown tokenization setting field"):
        TokenizeConfig.from_dict(stored)  # a record is not input: its derived keys are refused there
    with pytest.raises(ValidationError, match="did you mean 'prepend_bos'"):
        TokenizeConfig.from_record({**stored, "prepend_boss": False})
