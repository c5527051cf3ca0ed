"""Functional-word lexicon: BPE alignment and seeded rows that survive a checkpoint."""

from __future__ import annotations

import pytest
import torch

from dcsm.model.encoders import FrozenCLIP
from dcsm.model.functional_rows import DEFAULT_LEXICON, FunctionalRows, init_rows, resolve_lexicon


@pytest.fixture(scope="module")
def rows(encoder: FrozenCLIP) -> FunctionalRows:
    return FunctionalRows(DEFAULT_LEXICON, encoder.tokenizer, encoder.num_patches, seed=7)


def _marked_words(encoder: FrozenCLIP, rows: FunctionalRows, caption: str) -> list[tuple[str, str]]:
    ids = encoder.tokenize([caption])[:, :32]
    idx = rows.index(ids)[0]
    return [(encoder.tokenizer.decode([int(t)]).strip(), rows.phrases[int(e)]) for t, e in zip(ids[0], idx) if e >= 0]


def test_multi_word_phrase_marks_exactly_its_tokens(encoder: FrozenCLIP, rows: FunctionalRows) -> None:
    marked = _marked_words(encoder, rows, "a cup to the left of a plate")
    assert marked == [("to", "to the left of"), ("the", "to the left of"), ("left", "to the left of"), ("of", "to the left of")]


def test_negation_word_marked(encoder: FrozenCLIP, rows: FunctionalRows) -> None:
    assert _marked_words(encoder, rows, "no dog") == [("no", "no")]


def test_positions_are_bpe_positions_not_word_indices(encoder: FrozenCLIP, rows: FunctionalRows) -> None:
    """SOT shifts every word by one, and a multi-token word shifts later ones further."""
    caption = "a motorcycle is not above the hippopotamus"
    ids = encoder.tokenize([caption])[:, :32]
    idx = rows.index(ids)[0]
    words = [encoder.tokenizer.decode([int(t)]).strip() for t in ids[0]]
    for pos in (idx >= 0).nonzero().flatten().tolist():
        assert words[pos] in ("not", "above")
    assert [rows.phrases[int(e)] for e in idx[idx >= 0]] == ["not", "above"]


def test_index_is_batched_over_leading_dims(encoder: FrozenCLIP, rows: FunctionalRows) -> None:
    caps = ["a red square above a blue circle", "a cup without a plate", "a dog", "a big cat next to a small dog"]
    ids = encoder.tokenize(caps)[:, :20]
    flat = rows.index(ids)
    assert torch.equal(rows.index(ids.view(2, 2, 20)).view(4, 20), flat)
    assert (flat[2] == -1).all()
    big_cat = [rows.phrases[int(e)] for e in flat[3][flat[3] >= 0]]
    assert big_cat == ["big", "next to", "next to", "small"]


def test_same_seed_same_rows_after_checkpoint_round_trip(tmp_path, encoder: FrozenCLIP, rows: FunctionalRows) -> None:
    path = tmp_path / "rows.pt"
    torch.save(rows.state_dict(), path)
    other = FunctionalRows(DEFAULT_LEXICON, encoder.tokenizer, encoder.num_patches, seed=999)
    assert not torch.equal(other.rows, rows.rows)
    other.load_state_dict(torch.load(path))
    assert torch.equal(other.rows, rows.rows)
    again = FunctionalRows(DEFAULT_LEXICON, encoder.tokenizer, encoder.num_patches, seed=7)
    assert torch.equal(again.rows, rows.rows)


def test_rows_are_buffers_not_parameters(rows: FunctionalRows) -> None:
    assert list(rows.parameters()) == []
    assert {"rows", "phrase_ids", "phrase_len"} <= set(rows.state_dict())


def test_reference_init_range_and_per_entry_stability() -> None:
    r = init_rows(["left", "no"], 197, seed=3)
    assert r.shape == (2, 197)
    # (unit-norm Gaussian + 1) / 3: every entry within 1/3 +- 1/3, row norm of (3r - 1) is 1
    assert torch.allclose((3 * r - 1).norm(dim=1), torch.ones(2), atol=1e-5)
    # adding an entry does not change the others
    r2 = init_rows(["above", "left", "no"], 197, seed=3)
    assert torch.equal(r2[1:], r)


def test_bad_lexicon_raises() -> None:
    with pytest.raises(ValueError, match="unknown lexicon name 'fancy'"):
        resolve_lexicon("fancy")
    with pytest.raises(ValueError, match="empty phrase"):
        resolve_lexicon(["left", "  "])
