import pytest
import torch

from clnsod_core.network.backbones import get_backbone
from clnsod_core.network.config import ModelConfig
from clnsod_core.network.losses import clnsod_loss
from clnsod_core.network.model import CLNSOD


@pytest.mark.parametrize("use_context_prior", [True, False])
def test_forward_backward_at_working_size(use_context_prior: bool) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(use_context_prior=use_context_prior)
    model = CLNSOD(cfg).train()
    images = torch.rand(2, 3, cfg.input_size, cfg.input_size)
    out = model(images)
    assert out.logits.shape == (2, 1, 320, 320)
    if use_context_prior:
        assert out.context_map is not None
        assert out.context_map.shape == (2, cfg.num_positions, cfg.num_positions) == (2, 400, 400)
        assert 0.0 <= out.context_map.min().item() and out.context_map.max().item() <= 1.0
    else:
        assert out.context_map is None
    mask = torch.zeros(2, 1, 320, 320)
    mask[:, :, :120] = 1.0
    loss = clnsod_loss(out.logits, out.context_map, mask, None)["total"]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone._conv_stem.weight.grad.abs().sum() > 0
    if use_context_prior:
        assert model.context.to_map[0].weight.grad.abs().sum() > 0


def test_wrong_input_size_is_a_clear_error() -> None:
    model = CLNSOD().eval()
    with pytest.raises(ValueError, match=r"expected \(B, 3, 320, 320\)"):
        model(torch.rand(1, 3, 256, 256))
    with pytest.raises(ValueError, match="multiple of 32"):
        ModelConfig(input_size=300)


def test_imagenet_weights_load_into_backbone() -> None:
    spec = get_backbone("efficientnet_lite0")
    backbone = spec.build()
    spec.load_imagenet(backbone)
    assert spec.imagenet is not None
    assert torch.equal(backbone._conv_stem.weight, spec.imagenet()["_conv_stem.weight"])
    feats = backbone.eval()(torch.rand(1, 3, 320, 320))
    assert {s: tuple(f.shape[1:]) for s, f in feats.items() if s >= 4} == {
        4: (24, 80, 80), 8: (40, 40, 40), 16: (112, 20, 20), 32: (320, 10, 10)
    }


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(1)
    model = CLNSOD().eval()
    x = torch.rand(3, 3, 320, 320)
    with torch.no_grad():
        together = model(x).logits
        alone = model(x[1:2]).logits
    torch.testing.assert_close(together[1:2], alone, atol=1e-4, rtol=1e-4)
