"""Recall@K against similarity matrices worked out by hand."""

import pytest
import torch

from capfilt.demo.recall import recall_at_k


def test_recall_counts_ranks_in_both_directions():
    similarity = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.0],  # image 0: its text first
            [0.8, 0.5, 0.1, 0.2],  # image 1: its text second
            [0.1, 0.2, 0.3, 0.7],  # image 2: its text second
            [0.6, 0.4, 0.5, 0.1],  # image 3: its text last
        ]
    )
    result = recall_at_k(similarity, ks=(1, 2, 3))
    assert result["image_to_text@1"] == pytest.approx(1 / 4)
    assert result["image_to_text@2"] == pytest.approx(3 / 4)
    assert result["image_to_text@3"] == pytest.approx(3 / 4)
    # Columns: texts 0 and 1 rank their images first, text 2 second (0.5 above its 0.3), text 3 third (0.7 and
    # 0.2 above its 0.1).
    assert result["text_to_image@1"] == pytest.approx(2 / 4)
    assert result["text_to_image@2"] == pytest.approx(3 / 4)
    assert result["text_to_image@3"] == 1.0
    assert result["mean_recall@1"] == pytest.approx((1 / 4 + 2 / 4) / 2)


def test_ties_count_against_the_match():
    # Every score alike: the match is never found ahead of its ties, so R@K is K/n, not 1.
    flat = torch.zeros(4, 4)
    result = recall_at_k(flat, ks=(1, 2, 4))
    assert result["image_to_text@1"] == 0.0
    assert result["image_to_text@2"] == 0.0
    assert result["image_to_text@4"] == 1.0
    assert result["text_to_image@1"] == 0.0
    # One tie with another candidate: found within 2, not within 1.
    tied = torch.tensor([[0.5, 0.5], [0.1, 0.9]])
    result = recall_at_k(tied, ks=(1, 2))
    assert result["image_to_text@1"] == pytest.approx(1 / 2)
    assert result["image_to_text@2"] == 1.0
    assert result["text_to_image@1"] == 1.0  # down the columns, 0.5 beats 0.1 and 0.9 beats 0.5


def test_k_larger_than_the_set_finds_every_match():
    similarity = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    result = recall_at_k(similarity, ks=(1, 5, 10))
    assert result["image_to_text@1"] == 0.0
    assert result["image_to_text@5"] == 1.0 and result["text_to_image@10"] == 1.0


def test_only_square_matrices():
    with pytest.raises(ValueError, match="square"):
        recall_at_k(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="square"):
        recall_at_k(torch.zeros(0, 0))
