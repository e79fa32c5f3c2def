import torch

from clnsod_core.network.losses import (
    VOID,
    affinity_loss,
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
