import torch

from clnsod_core.network.losses import (
    VOID,
    affinity_loss,
    anchor_loss,
    clnsod_loss,
    downscale_labels,
    ideal_affinity_map,
    make_labels,
    masked_bce_with_logits,
)


def test_ideal_map_of_a_4x4_label() -> None:
    # Top half sky (1), bottom-left foreground (0), bottom-right void (2).
    labels = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])[None]
    a = ideal_affinity_map(labels)[0]
    assert a.shape == (16, 16)
    flat = labels.flatten()
    expected = (flat[:, None] == flat[None, :]).float()
    assert torch.equal(a, expected)
    assert torch.equal(a, a.T)
    assert a[0].sum() == 8  # a sky position agrees with all 8 sky positions
    assert a[8].sum() == 4 and a[8, 10] == 0  # foreground vs void: different classes
    assert a[10, 11] == 1  # void is its own class


def test_loss_is_zero_when_s_equals_a() -> None:
    labels = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 2], [1, 1, 0, 0]])[None]
    a = ideal_affinity_map(labels)
    # A singleton class (one void position) must not blow up precision/recall.
    assert float(affinity_loss(a.clone(), a)) < 1e-4
    wrong = 1.0 - a
    assert float(affinity_loss(wrong.clamp(0.05, 0.95), a)) > 1.0
    half = torch.full_like(a, 0.5)
    assert 0.5 < float(affinity_loss(half, a)) < float(affinity_loss(wrong.clamp(0.05, 0.95), a))


def test_zero_denominators_count_as_perfect() -> None:
    labels = torch.ones(1, 4, 4, dtype=torch.long)  # only one class: 1-A is all zero
    a = ideal_affinity_map(labels)
    loss = affinity_loss(a.clone(), a)
    assert torch.isfinite(loss) and float(loss) < 1e-4


def test_void_pixels_are_ignored_by_bce_and_a_class_of_their_own() -> None:
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1.0
    void = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    void[..., 6:, 6:] = True
    logits = torch.zeros(1, 1, 8, 8)
    base = masked_bce_with_logits(logits, mask, void)
    changed = logits.clone()
    changed[void] = 50.0  # wildly wrong, but only where unlabelled
    assert torch.allclose(masked_bce_with_logits(changed, mask, void), base)
    labels = make_labels(mask, void)
    assert int(labels[0, 7, 7]) == VOID and int(labels[0, 0, 0]) == 1 and int(labels[0, 5, 0]) == 0
    small = downscale_labels(labels, 4)
    assert small.shape == (1, 4, 4) and set(small.unique().tolist()) == {0, 1, 2}


def test_losses_run_in_fp32_under_autocast() -> None:
    logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    s = torch.rand(2, 4, 4, requires_grad=True)
    mask = (torch.rand(2, 1, 32, 32) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = clnsod_loss(logits.bfloat16(), s.bfloat16(), mask, None)
    assert parts["total"].dtype == torch.float32
    parts["total"].backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_anchor_loss_holds_only_what_the_anchor_gets_right() -> None:
    """Pixels where the anchor agrees with the label pull toward the anchor's probability (no pull where
    the student already equals it); where it disagrees, or the label is void, nothing pulls at all."""
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1.0  # top half sky
    anchor = torch.full((1, 1, 4, 4), 0.2)
    anchor[..., :2, :] = 0.9
    anchor[..., 0, 0] = 0.1  # misses a sky pixel
    anchor[..., 3, 3] = 0.8  # calls a foreground pixel sky
    void = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    void[..., 2, 0] = True
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    anchor_loss(logits, anchor, mask, void).backward()
    assert logits.grad is not None
    free = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    free[..., 0, 0] = free[..., 3, 3] = free[..., 2, 0] = True
    assert torch.all(logits.grad[free] == 0)
    assert torch.all(logits.grad[~free & (mask > 0.5)] < 0)  # toward 0.9 from 0.5
    assert torch.all(logits.grad[~free & (mask < 0.5)] > 0)  # toward 0.2 from 0.5

    at_anchor = torch.logit(anchor).requires_grad_(True)
    anchor_loss(at_anchor, anchor, mask, void).backward()
    assert at_anchor.grad is not None and float(at_anchor.grad.abs().max()) < 1e-6
    never = anchor_loss(torch.zeros(1, 1, 4, 4), 1.0 - mask, mask, None)  # an anchor that is wrong everywhere
    assert float(never) == 0.0
