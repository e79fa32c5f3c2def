"""Moving trained weights to another working size (trainer/input_size.py), on the embedded weights and
a real photo; ``clnsod train --input-size`` is tested in test_train.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clnsod_core.masking.inference import SkyMasker, embedded_weights_path
from clnsod_core.weights.format import load_model
from trainer.input_size import CONTEXT_MAP_PREFIX, convert_file, resample_positions


def test_position_grid_is_resampled_not_reordered() -> None:
    """A per-position value that is a smooth function of the position stays that function on the new grid."""
    side, new_side = 4, 7
    ys, xs = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    values = torch.tensor(np.stack([ys.ravel(), xs.ravel()], axis=1), dtype=torch.float32)  # (16, 2)
    out = resample_positions(values, side, new_side)
    ys2, xs2 = np.meshgrid(np.linspace(0, 1, new_side), np.linspace(0, 1, new_side), indexing="ij")
    np.testing.assert_allclose(out.numpy(), np.stack([ys2.ravel(), xs2.ravel()], axis=1), atol=1e-6)
    assert torch.equal(resample_positions(values, side, side), values)


def test_moved_weights_keep_the_network_and_the_answer(tmp_path: Path, landscape_photo: Path) -> None:
    out = tmp_path / "384.pt"
    convert_file(embedded_weights_path(), 384, out)
    old, new = load_model(embedded_weights_path()), load_model(out)
    assert new.config.input_size == 384 and new.config.num_positions == 24 * 24
    old_state, new_state = old.state_dict(), new.state_dict()
    for name, value in old_state.items():
        if name.startswith(CONTEXT_MAP_PREFIX) and value.dim() >= 1:
            assert new_state[name].shape[0] == 576  # one channel per position of the 24 x 24 grid
        else:
            assert torch.equal(new_state[name], value), name
    # The same photo's sky at both sizes: the moved network works without any training.
    old_sky = SkyMasker(embedded_weights_path(), device="cpu").predict_file(landscape_photo)[1] >= 0.5
    new_sky = SkyMasker(out, device="cpu").predict_file(landscape_photo)[1] >= 0.5
    assert 0.05 < old_sky.mean() < 0.95
    assert (old_sky & new_sky).sum() / (old_sky | new_sky).sum() > 0.95
