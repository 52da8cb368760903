"""Pairing rules of the pairwise pixel sampler (no nerfstudio objects)."""

from dataclasses import dataclass

import pytest
import torch

from relationfield.sampler import PAIR_OBJECTS, PAIR_RELATION, PAIR_UNIFORM, PairSampler, sample_in_masks


@dataclass
class FakeLabels:
    """Two 20x30 frames: frame 0 has masks 1 (left block) and 2 (right block) and relation 1 -> 2;
    frame 1 has one mask and no relation."""

    segments: list[torch.Tensor]
    mask_offsets: torch.Tensor
    mask_boxes: torch.Tensor
    relation_frame: torch.Tensor
    relation_subject: torch.Tensor
    relation_object: torch.Tensor

    def relation_lookup(self, subject, obj):
        out = torch.full_like(subject, -1)
        for r, (s, o) in enumerate(zip(self.relation_subject.tolist(), self.relation_object.tolist())):
            out[(subject == s) & (obj == o)] = r
        return out


@pytest.fixture
def labels():
    f0 = torch.zeros(20, 30, dtype=torch.uint8)
    f0[2:6, 2:8] = 1
    f0[10:18, 20:28] = 2
    f1 = torch.zeros(20, 30, dtype=torch.uint8)
    f1[5:15, 5:25] = 1
    return FakeLabels(
        segments=[f0, f1],
        mask_offsets=torch.tensor([0, 2, 3]),
        mask_boxes=torch.tensor([[2, 2, 5, 7], [10, 20, 17, 27], [5, 5, 14, 24]], dtype=torch.int16),
        relation_frame=torch.tensor([0]),
        relation_subject=torch.tensor([0]),
        relation_object=torch.tensor([1]),
    )


SIZES = [(20, 30), (20, 30)]


@pytest.mark.parametrize("num_rays", [1, 2, 3, 7, 64, 1001])
def test_any_batch_size_pairs_within_one_image(labels, num_rays):
    batch = PairSampler(labels, images_per_batch=4, relation_pair_fraction=0.5).sample([0, 1], SIZES, num_rays)
    assert batch.y.shape == (num_rays,)
    assert (batch.partner[batch.partner] == torch.arange(num_rays)).all()  # partner of partner is self
    assert (batch.image == batch.image[batch.partner]).all()
    assert ((batch.y >= 0) & (batch.y < 20) & (batch.x >= 0) & (batch.x < 30)).all()


def test_relation_pairs_hit_subject_and_object_masks(labels):
    sampler = PairSampler(labels, images_per_batch=1, relation_pair_fraction=1.0, seed=3)
    batch = sampler.sample([0], SIZES[:1], 200)
    first = torch.arange(0, 200, 2)
    assert batch.from_relation[first].all()
    assert (labels.segments[0][batch.y[first], batch.x[first]] == 1).all()
    assert (labels.segments[0][batch.y[first + 1], batch.x[first + 1]] == 2).all()
    assert (batch.relation[first] == 0).all()  # subject -> object is labelled
    assert (batch.relation[first + 1] == -1).all()  # object -> subject is not


def test_uniform_pairs_and_mask_ids(labels):
    batch = PairSampler(labels, images_per_batch=2, relation_pair_fraction=0.0).sample([0, 1], SIZES, 4000)
    assert not batch.from_relation.any()
    frame = batch.image  # image position == frame here
    local = torch.stack([labels.segments[int(f)][y, x] for f, y, x in zip(frame, batch.y, batch.x)]).long()
    expected = torch.where(local > 0, labels.mask_offsets[frame] + local - 1, -1)
    assert (batch.mask == expected).all()
    # uniform pairs cover the whole image
    assert batch.y.min() == 0 and batch.y.max() == 19 and batch.x.min() == 0 and batch.x.max() == 29
    # both images used, in blocks
    assert set(batch.image.tolist()) == {0, 1}


def test_relation_fraction_is_respected(labels):
    batch = PairSampler(labels, images_per_batch=1, relation_pair_fraction=0.3, seed=1).sample([0], SIZES[:1], 4000)
    share = batch.from_relation.float().mean().item()
    assert 0.25 < share < 0.35


def test_frames_without_relations_fall_back_to_uniform(labels):
    batch = PairSampler(labels, images_per_batch=1, relation_pair_fraction=1.0).sample([1], SIZES[1:], 100)
    assert not batch.from_relation.any()


def test_sample_in_masks_reports_misses():
    seg = torch.zeros(10, 10, dtype=torch.uint8)
    seg[0, 0] = 1
    gen = torch.Generator().manual_seed(0)
    y, x, ok = sample_in_masks(seg, torch.tensor([1, 2]), torch.tensor([[0, 0, 9, 9], [0, 0, 9, 9]]), gen, candidates=4)
    assert not ok[1]
    if ok[0]:
        assert (y[0], x[0]) == (0, 0)


def test_labels_stored_at_another_resolution(labels):
    """Images downscaled by 2 (nerfstudio's images_2): pixels map onto the 20x30 label maps."""
    sampler = PairSampler(labels, images_per_batch=1, relation_pair_fraction=1.0, seed=2)
    batch = sampler.sample([0], [(10, 15)], 100)
    assert (batch.y < 10).all() and (batch.x < 15).all()
    first = torch.arange(0, 100, 2)
    assert (batch.mask[first] == 0).all() and (batch.mask[first + 1] == 1).all()


@pytest.fixture
def three_masks():
    """One 20x30 frame: a large mask 1 (15x25) and two tiny ones, 2 (2x2) and 3 (3x3); relation 2 -> 1."""
    seg = torch.zeros(20, 30, dtype=torch.uint8)
    seg[0:15, 0:25] = 1
    seg[16:18, 26:28] = 2
    seg[17:20, 0:3] = 3
    return FakeLabels(
        segments=[seg],
        mask_offsets=torch.tensor([0, 3]),
        mask_boxes=torch.tensor([[0, 0, 14, 24], [16, 26, 17, 27], [17, 0, 19, 2]], dtype=torch.int16),
        relation_frame=torch.tensor([0]),
        relation_subject=torch.tensor([1]),
        relation_object=torch.tensor([0]),
    )


def test_object_pairs_join_two_different_masks_drawn_uniformly(three_masks):
    sampler = PairSampler(three_masks, images_per_batch=1, relation_pair_fraction=0.0, object_pair_fraction=1.0)
    batch = sampler.sample([0], SIZES[:1], 6000)
    first = torch.arange(0, 6000, 2)
    assert (batch.source == PAIR_OBJECTS).all()
    assert (batch.mask >= 0).all()  # every ray is on a mask
    assert (batch.mask[first] != batch.mask[first + 1]).all()
    # Each mask is the subject about a third of the time, although mask 2 covers 4 of the 600 pixels.
    shares = torch.bincount(batch.mask[first], minlength=3).float() / len(first)
    assert ((shares > 0.28) & (shares < 0.39)).all(), shares
    # The targets come from the label store: mask 2 -> mask 1 is the labelled relation, the rest are "none".
    labelled = (batch.mask == 1) & (batch.mask[batch.partner] == 0)
    assert labelled.any() and (batch.relation[labelled] == 0).all()
    assert (batch.relation[~labelled] == -1).all()


def test_pair_sources_follow_the_fractions(three_masks):
    sampler = PairSampler(three_masks, images_per_batch=1, relation_pair_fraction=0.3, object_pair_fraction=0.5, seed=4)
    source = sampler.sample([0], SIZES[:1], 8000).source
    shares = [float((source == kind).float().mean()) for kind in (PAIR_RELATION, PAIR_OBJECTS, PAIR_UNIFORM)]
    assert abs(shares[0] - 0.3) < 0.04 and abs(shares[1] - 0.5) < 0.04 and abs(shares[2] - 0.2) < 0.04, shares


def test_fractions_are_checked(three_masks):
    with pytest.raises(ValueError, match="object_pair_fraction"):
        PairSampler(three_masks, object_pair_fraction=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        PairSampler(three_masks, relation_pair_fraction=0.6, object_pair_fraction=0.6)


def test_object_pairs_need_two_masks(labels):
    """Frame 1 has one mask: its object pairs stay uniform pixel pairs."""
    sampler = PairSampler(labels, images_per_batch=1, relation_pair_fraction=0.0, object_pair_fraction=1.0)
    assert (sampler.sample([1], SIZES[1:], 200).source == PAIR_UNIFORM).all()
