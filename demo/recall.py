"""Recall@K of a retrieval model from its image-text similarity matrix, as CLIP, BLIP and DataComp report it."""

from __future__ import annotations

import torch

KS = (1, 5, 10)


def recall_at_k(similarity: torch.Tensor, ks=KS) -> dict[str, float]:
    """Image→text and text→image Recall@K of an ``(n, n)`` similarity matrix whose diagonal holds the matches
    (image ``i`` goes with text ``i``), and DataComp's ``mean_recall@1``.

    A match counts as found within K when fewer than K other candidates score at least as high as it: ties
    count against the match, so a model that scores everything alike gets K/n, not 1. K at or above n finds
    every match.

    Args:
        similarity: ``similarity[i, j]`` scores image ``i`` against text ``j``.
        ks: the K values.

    Returns:
        ``image_to_text@K`` and ``text_to_image@K`` for each K, and ``mean_recall@1``.
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] == 0:
        raise ValueError(f"need a non-empty square similarity matrix, got shape {tuple(similarity.shape)}")
    result = {}
    for name, matrix in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        matches = matrix.diagonal().unsqueeze(1)
        # Candidates other than the match scoring at least as high (the match itself always ties with itself).
        ahead = (matrix >= matches).sum(1) - 1
        for k in ks:
            result[f"{name}@{k}"] = (ahead < k).float().mean().item()
    if 1 in ks:
        result["mean_recall@1"] = (result["image_to_text@1"] + result["text_to_image@1"]) / 2
    return result
