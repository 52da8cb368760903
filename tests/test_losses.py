"""Losses on tiny tensors: values where they are known, and that optimising them does what they claim."""

import math

import torch
import torch.nn.functional as F

from relationfield.losses import (
    cosine_loss,
    instance_contrastive_loss,
    multi_positive_contrastive_loss,
    relation_loss,
    relation_targets_onehot,
)


def test_cosine_loss_values_and_weights():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    assert torch.isclose(cosine_loss(a, b, torch.tensor([1.0, 0.0, 0.0])), torch.tensor(0.0))
    assert torch.isclose(cosine_loss(a, b, torch.tensor([0.0, 1.0, 0.0])), torch.tensor(2.0))
    assert torch.isclose(cosine_loss(a, b, torch.tensor([1.0, 1.0, 1.0])), torch.tensor(1.0))
    empty = cosine_loss(a.requires_grad_(), b, torch.zeros(3))
    assert empty.item() == 0.0 and empty.requires_grad


def test_onehot_marks_predicates_and_none():
    ids = torch.tensor([[0, 2], [1, -1], [-1, -1]])
    pos = relation_targets_onehot(ids, 3)
    assert pos.tolist() == [
        [True, False, True, False],
        [False, True, False, False],
        [False, False, False, True],
    ]


def test_instance_loss_prefers_separated_instances():
    mask = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    image = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0]] * 3 + [[0, 1.0]] * 3 + [[1.0, 0]] * 2)
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
    good = instance_contrastive_loss(separated, mask, image, margin=1.0)
    bad = instance_contrastive_loss(mixed, mask, image, margin=1.0)
    assert good.item() < 1e-6 < bad.item()
    # mask 2 lives in another image: identical features to mask 0 cost nothing
    unlabelled = instance_contrastive_loss(separated, torch.full_like(mask, -1), image)
    assert unlabelled.item() == 0.0


def _dense_instance_loss(features, mask_ids, image_ids, margin):
    """The loss written over the whole N x N matrix (the definition the per-image blocks must reproduce)."""
    feats = F.normalize(features, dim=-1)
    valid = mask_ids >= 0
    same_image = (image_ids[:, None] == image_ids[None, :]) & valid[:, None] & valid[None, :]
    same_image.fill_diagonal_(False)
    same_mask = mask_ids[:, None] == mask_ids[None, :]
    dist = torch.cdist(feats, feats)
    pos = (dist[same_image & same_mask] ** 2).mean()
    neg = (F.relu(margin - dist[same_image & ~same_mask]) ** 2).mean()
    return pos + neg


def test_instance_loss_by_image_blocks_equals_the_dense_definition():
    torch.manual_seed(0)
    image = torch.randint(0, 5, (300,))
    mask = image * 10 + torch.randint(0, 4, (300,))
    mask[torch.rand(300) < 0.2] = -1  # unlabelled rays
    feats = torch.randn(300, 8, requires_grad=True)
    blocks = instance_contrastive_loss(feats, mask, image, margin=0.8)
    dense = _dense_instance_loss(feats, mask, image, margin=0.8)
    assert torch.allclose(blocks, dense, rtol=1e-5)
    (grad_blocks,) = torch.autograd.grad(blocks, feats)
    (grad_dense,) = torch.autograd.grad(dense, feats)
    assert torch.allclose(grad_blocks, grad_dense, atol=1e-6)


def test_instance_loss_training_separates_masks():
    torch.manual_seed(0)
    mask = torch.arange(4).repeat_interleave(16)
    image = torch.zeros_like(mask)
    feats = (torch.randn(64, 8) * 0.01).requires_grad_()
    opt = torch.optim.Adam([feats], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        instance_contrastive_loss(feats, mask, image).backward()
        opt.step()
    f = F.normalize(feats.detach(), dim=-1)
    centroids = torch.stack([f[mask == m].mean(0) for m in range(4)])
    nearest = torch.cdist(f, centroids).argmin(1)
    assert (nearest == mask).float().mean() > 0.95


def test_contrastive_separates_antonyms_better_than_cosine_alone():
    torch.manual_seed(0)
    bigger = F.normalize(torch.randn(16), dim=0)
    smaller = F.normalize(bigger + 0.35 * F.normalize(torch.randn(16), dim=0), dim=0)
    none = F.normalize(torch.randn(16), dim=0)
    table = torch.stack([bigger, smaller, none])
    targets = torch.stack([bigger, smaller])
    positives = torch.tensor([[True, False, False], [False, True, False]])

    def train(contrastive_weight):
        pred = (torch.randn(2, 16) * 0.1).requires_grad_()
        opt = torch.optim.Adam([pred], lr=0.05)
        for _ in range(300):
            opt.zero_grad()
            relation_loss(
                pred, targets, positives, table, torch.ones(2, dtype=torch.bool), 0.2, contrastive_weight
            ).backward()
            opt.step()
        sims = F.normalize(pred.detach(), dim=-1) @ table.T
        return (sims[0, 0] - sims[0, 1]).item(), sims.argmax(1).tolist()

    margin_cos, winners_cos = train(0.0)
    margin_con, winners_con = train(1.0)
    assert winners_con == [0, 1]
    assert margin_con > margin_cos + 0.05


def test_multi_positive_wants_every_positive_above_the_negatives():
    table = torch.eye(3)
    pos = torch.tensor([[True, True, False]])
    near_first = multi_positive_contrastive_loss(torch.tensor([[5.0, 0, 0]]), table, pos, torch.ones(1))
    near_second = multi_positive_contrastive_loss(torch.tensor([[0, 5.0, 0]]), table, pos, torch.ones(1))
    between = multi_positive_contrastive_loss(torch.tensor([[1.0, 1.0, 0]]), table, pos, torch.ones(1))
    near_negative = multi_positive_contrastive_loss(torch.tensor([[0, 0, 5.0]]), table, pos, torch.ones(1))
    assert torch.isclose(near_first, near_second)
    # one positive alone leaves the other tied with the negative: log 2 / 2 for that row
    assert torch.isclose(near_first, torch.tensor(math.log(2) / 2), atol=1e-3)
    assert between < 0.01 < near_first < near_negative
    # a single positive is plain InfoNCE: -log softmax
    single = multi_positive_contrastive_loss(
        torch.tensor([[0.3, -0.2, 0.5]]), table, torch.tensor([[True, False, False]]), torch.ones(1)
    )
    logits = torch.nn.functional.normalize(torch.tensor([0.3, -0.2, 0.5]), dim=0) / 0.1
    assert torch.isclose(single, -torch.log_softmax(logits, dim=0)[0], atol=1e-5)


def test_relation_loss_takes_a_none_weight_per_ray():
    """A per-ray none weight: rays weighted 0 drop out, the same number everywhere is the float weight."""
    torch.manual_seed(0)
    pred, table = torch.randn(6, 8), torch.randn(4, 8)
    positives = relation_targets_onehot(torch.tensor([[0], [1], [-1], [-1], [-1], [2]]), 3)
    target = table[positives.float().argmax(dim=1)]
    valid = torch.ones(6, dtype=torch.bool)

    def loss(weight, keep=valid):
        return relation_loss(pred, target, positives, table, keep, none_weight=weight, contrastive_weight=0.5)

    assert torch.allclose(loss(torch.full((6,), 0.2)), loss(0.2))
    per_ray = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])  # rays 2, 3 ("none") weighted 0
    keep = torch.tensor([True, True, False, False, True, True])
    assert torch.allclose(loss(per_ray), loss(1.0, keep))
    assert not torch.allclose(loss(per_ray), loss(1.0))
