"""Training losses of the feature heads, on plain tensors (no nerfstudio objects).

Every loss takes per-ray predictions and targets plus a validity mask and returns a scalar that is
zero (with a gradient path) when no ray is valid, so a batch without labels never produces NaNs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    total = weights.sum()
    if total <= 0:
        return values.sum() * 0.0
    return (values * weights).sum() / total


def cosine_loss(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean of ``1 - cos(pred, target)`` over rays; ``weights`` is [N] (0 = ignore)."""
    cos = F.cosine_similarity(pred, target.to(pred.dtype), dim=-1)
    return _masked_mean(1.0 - cos, weights.to(pred.dtype))


def instance_contrastive_loss(features: Tensor, mask_ids: Tensor, image_ids: Tensor, margin: float = 1.0) -> Tensor:
    """Contrastive loss on instance features.

    Rays on the same mask of the same image attract (squared distance); rays on different masks of
    the same image repel until they are ``margin`` apart (squared hinge). Rays of different images
    are not compared (mask ids do not carry across images), nor are unlabelled rays (``mask_ids < 0``).

    Args:
        features: [N, d] instance features (normalised inside).
        mask_ids: [N] global mask id of each ray, -1 where unlabelled.
        image_ids: [N] image index of each ray.
    """
    feats = F.normalize(features, dim=-1)
    valid = mask_ids >= 0
    zero = feats.sum() * 0.0
    pos_sum, neg_sum, pos_count, neg_count = zero, zero, 0, 0
    # One image at a time: the pairs compared never cross images, so the blocks are all of the N x N matrix
    # that matters (a 1024-ray batch of 8 images: 8 blocks of 128 x 128 instead of 1024 x 1024).
    for image in torch.unique(image_ids[valid]):
        rows = torch.nonzero(valid & (image_ids == image)).squeeze(1)
        if len(rows) < 2:
            continue
        masks = mask_ids[rows]
        dist = torch.cdist(feats[rows], feats[rows])
        positive = masks[:, None] == masks[None, :]
        negative = ~positive
        positive.fill_diagonal_(False)
        pos_sum = pos_sum + (dist[positive] ** 2).sum()
        neg_sum = neg_sum + (F.relu(margin - dist[negative]) ** 2).sum()
        pos_count += int(positive.sum())
        neg_count += int(negative.sum())
    pos_loss = pos_sum / pos_count if pos_count else zero
    neg_loss = neg_sum / neg_count if neg_count else zero
    return pos_loss + neg_loss


def relation_targets_onehot(predicate_ids: Tensor, num_predicates: int) -> Tensor:
    """Multi-hot positives over ``[predicates..., none]`` from padded predicate ids.

    Args:
        predicate_ids: [N, K] predicate indices padded with -1; a row of all -1 means "none".
        num_predicates: P, the size of the capture's predicate table.

    Returns:
        [N, P + 1] bool; column P is "none".
    """
    n = predicate_ids.shape[0]
    positives = torch.zeros(n, num_predicates + 1, dtype=torch.bool, device=predicate_ids.device)
    rows, cols = torch.nonzero(predicate_ids >= 0, as_tuple=True)
    positives[rows, predicate_ids[rows, cols]] = True
    positives[:, num_predicates] = ~positives[:, :num_predicates].any(dim=1)
    return positives


def multi_positive_contrastive_loss(
    pred: Tensor, table: Tensor, positives: Tensor, weights: Tensor, temperature: float = 0.1
) -> Tensor:
    """InfoNCE against a table of text embeddings with several positives per row, one term per positive.

    For every positive p of a row: ``-log(exp(s_p) / (exp(s_p) + sum_{n in neg} exp(s_n)))`` with
    ``s = cos(pred, table) / T``, averaged over the row's positives. Each predicate of a pair must beat
    all the capture's other relation texts (and "none"), so a pair that is both "standing on" and
    "smaller than" ranks both high instead of only the easier one, and antonyms such as
    "bigger than" / "smaller than" stay apart even though their text embeddings are close. The other
    positives are left out of each term's denominator, so positives do not compete.

    Args:
        pred: [N, D] rendered relation features.
        table: [P + 1, D] predicate embeddings with "none" last.
        positives: [N, P + 1] bool.
        weights: [N] per-ray weights (0 = ignore).
    """
    logits = F.normalize(pred, dim=-1) @ F.normalize(table.to(pred.dtype), dim=-1).T / temperature
    log_negatives = torch.logsumexp(logits.masked_fill(positives, float("-inf")), dim=-1, keepdim=True)
    per_positive = F.softplus(log_negatives - logits)  # -log(e^s_p / (e^s_p + sum_neg e^s_n))
    count = positives.sum(dim=-1)
    per_ray = (per_positive * positives).sum(dim=-1) / count.clamp(min=1)
    has_pos = count > 0
    return _masked_mean(per_ray, weights.to(pred.dtype) * has_pos.to(pred.dtype))


def relation_loss(
    pred: Tensor,
    target_embedding: Tensor,
    positives: Tensor,
    table: Tensor,
    valid: Tensor,
    none_weight: float | Tensor,
    contrastive_weight: float,
    temperature: float = 0.1,
) -> Tensor:
    """Cosine loss to the pair's relation (or "none") embedding plus the multi-positive contrastive term.

    Pairs without a relation ("none", the last column of ``positives``) are weighted by ``none_weight``
    (a number, or one per ray [N]): uniformly paired rays are almost all "none" between large surfaces.
    """
    is_none = positives[:, -1]
    none = torch.as_tensor(none_weight, dtype=pred.dtype, device=pred.device).expand(pred.shape[0])
    weights = valid.to(pred.dtype) * torch.where(is_none, none, torch.ones_like(pred[:, 0]))
    loss = cosine_loss(pred, target_embedding, weights)
    if contrastive_weight > 0:
        loss = loss + contrastive_weight * multi_positive_contrastive_loss(pred, table, positives, weights, temperature)
    return loss
