"""Weight-space blending of the embedded weights with a fine-tuned copy (real weights files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clnsod_core.masking.inference import embedded_weights_path
from clnsod_core.weights.format import WeightsError, load_model, save_weights
from trainer.blend_weights import blend_files


def test_blend_is_the_weighted_mean_of_both_files(tmp_path: Path) -> None:
    start = embedded_weights_path()
    tuned_model = load_model(start)
    with torch.no_grad():
        for param in tuned_model.parameters():
            param.add_(0.01)
    tuned = tmp_path / "tuned.pt"
    save_weights(tuned_model, tuned)
    out = tmp_path / "blend.pt"
    blend_files(start, tuned, 0.25, out)
    a, b, c = (load_model(p).state_dict() for p in (start, tuned, out))
    for name, value in c.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a[name] + 0.25 * b[name], atol=2e-3), name
        else:
            assert torch.equal(value, b[name])
    stem = "backbone._conv_stem.weight"
    assert not torch.allclose(c[stem], a[stem]) and not torch.allclose(c[stem], b[stem])


def test_blend_refuses_other_architectures_and_bad_alpha(tmp_path: Path) -> None:
    from clnsod_core.network.config import ModelConfig
    from clnsod_core.network.model import CLNSOD

    other = tmp_path / "no_context.pt"
    save_weights(CLNSOD(ModelConfig(use_context_prior=False)), other)
    with pytest.raises(WeightsError):
        blend_files(embedded_weights_path(), other, 0.5, tmp_path / "x.pt")
    with pytest.raises(ValueError):
        blend_files(embedded_weights_path(), embedded_weights_path(), 1.5, tmp_path / "y.pt")
