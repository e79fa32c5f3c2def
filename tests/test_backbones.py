"""Pluggable backbones: a second, tiny backbone is one module-worth of code plus one registry entry,
and the whole network (context map, decoder, loss, weight files) works with it unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from clnsod_core.network.backbones import BACKBONES, BackboneSpec, get_backbone, register
from clnsod_core.network.config import ModelConfig
from clnsod_core.network.losses import clnsod_loss
from clnsod_core.network.model import CLNSOD
from clnsod_core.weights.format import load_model, read_weights, save_weights
from clnsod_core.weights.registry import resolve_weights


class TinyBackbone(nn.Module):
    """Four strided convolutions: features at strides 4, 8, 16 and 32 (what every backbone returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU())
                                    for c in (8, 16, 32))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.stem(x)
        features = {4: x}
        for stride, stage in zip((8, 16, 32), self.stages, strict=True):
            x = stage(x)
            features[stride] = x
        return features


TINY = BackboneSpec(name="tiny-test", build=TinyBackbone, channels={4: 8, 8: 16, 16: 32, 32: 64},
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module", autouse=True)
def tiny_registered():
    register(TINY)  # the one registry entry
    yield
    BACKBONES.pop(TINY.name)


def test_a_tiny_backbone_trains_saves_and_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CLNSOD(ModelConfig(backbone="tiny-test", input_size=64))
    images = torch.rand(2, 3, 64, 64)
    out = model(images)
    assert out.logits.shape == (2, 1, 64, 64) and out.context_map is not None
    assert out.context_map.shape == (2, 16, 16)  # (64 / 16)^2 positions
    masks = (torch.rand(2, 1, 64, 64) > 0.5).float()
    losses = clnsod_loss(out.logits, out.context_map, masks, torch.zeros_like(masks, dtype=torch.bool))
    losses["total"].backward()
    assert model.backbone.stem[0].weight.grad is not None
    assert torch.allclose(model.mean.flatten(), torch.tensor(TINY.mean))  # normalisation from the spec

    path = tmp_path / "tiny.pt"
    save_weights(model, path, half=False)
    assert read_weights(path)["config"]["backbone"] == "tiny-test"
    loaded = load_model(path)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, model(images).logits)


def test_weight_files_written_before_backbones_were_pluggable_still_load(tmp_path: Path) -> None:
    """v1 and v2 (still in the registry) name no backbone and store the input mean/std instead: the
    embedded weights rewritten in that older layout must load as the same network."""
    current = read_weights(resolve_weights(None))
    spec = get_backbone("efficientnet_lite0")
    legacy_config = {k: v for k, v in current["config"].items() if k != "backbone"}
    legacy_config.update(mean=spec.mean, std=spec.std)
    legacy = tmp_path / "legacy.pt"
    torch.save({**current, "config": legacy_config}, legacy)
    model = load_model(legacy)
    assert model.config.backbone == "efficientnet_lite0"
    assert tuple(model.mean.flatten().tolist()) == pytest.approx(spec.mean)
    size = model.config.input_size
    images = torch.rand(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images).logits, load_model(resolve_weights(None)).eval()(images).logits)


def test_unknown_backbones_and_missing_strides_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'.*efficientnet_lite0"):
        ModelConfig(backbone="resnet9000")
    with pytest.raises(ValueError, match="missing \\[32\\]"):
        register(BackboneSpec(name="broken", build=TinyBackbone, channels={4: 8, 8: 16, 16: 32},
                              mean=(0.5,) * 3, std=(0.5,) * 3))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        TINY.load_imagenet(TinyBackbone())
