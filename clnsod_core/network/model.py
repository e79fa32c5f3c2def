"""CLN-SOD: context-aware learning network for sky (salient object) segmentation.

Pipeline (the formulation: ARCHITECTURE.md, "The network"):
backbone -> X (stride 16) -> separation module -> X~ -> context-aware map S (N x N)
-> intra = S.X~/N, inter = (1-S).X~/N -> fuse [X, intra, inter] -> decoder over the
stride-8 and stride-4 backbone features -> sky logit at the input size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clnsod_core.network.backbones import get_backbone
from clnsod_core.network.config import ModelConfig


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class SeparationModule(nn.Module):
    """3x3 conv, then parallel depthwise (k x 1 -> 1 x k) and (1 x k -> k x 1) branches, summed."""

    def __init__(self, in_ch: int, out_ch: int, k: int) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(in_ch, out_ch, 3)
        pad = k // 2

        def depthwise(kh: int, kw: int, ph: int, pw: int) -> nn.Conv2d:
            return nn.Conv2d(out_ch, out_ch, (kh, kw), padding=(ph, pw), groups=out_ch, bias=False)

        self.branch_a = nn.Sequential(depthwise(k, 1, pad, 0), depthwise(1, k, 0, pad))
        self.branch_b = nn.Sequential(depthwise(1, k, 0, pad), depthwise(k, 1, pad, 0))
        self.norm = nn.Sequential(nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return self.norm(self.branch_a(x) + self.branch_b(x))


class ContextPrior(nn.Module):
    """Context-aware map S and the intra-/inter-class context it aggregates."""

    def __init__(self, channels: int, num_positions: int) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.to_map = nn.Sequential(nn.Conv2d(channels, num_positions, 1, bias=False), nn.BatchNorm2d(num_positions))
        self.intra_proj = conv_bn_relu(channels, channels)
        self.inter_proj = conv_bn_relu(channels, channels)

    def forward(self, x_tilde: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, h, w = x_tilde.shape
        n = h * w
        if n != self.num_positions:
            raise ValueError(f"context map expects {self.num_positions} positions, got {h}x{w}={n}")
        # S[b, i, j]: probability that position j belongs with position i.
        logits = self.to_map(x_tilde).view(b, n, n).transpose(1, 2)
        s = torch.sigmoid(logits)
        values = x_tilde.flatten(2).transpose(1, 2)  # (b, n, c)
        intra = torch.bmm(s, values) / n
        inter = torch.bmm(1.0 - s, values) / n
        intra = intra.transpose(1, 2).reshape(b, c, h, w)
        inter = inter.transpose(1, 2).reshape(b, c, h, w)
        return self.intra_proj(intra), self.inter_proj(inter), s


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # (B, 1, H, W) sky logit at the input size
    context_map: torch.Tensor | None  # (B, N, N) S, or None for the ablation


class CLNSOD(nn.Module):
    """The network named by ``config``: any registered backbone, context prior, decoder."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        spec = get_backbone(cfg.backbone)
        ch = spec.channels
        self.backbone = spec.build()
        feat_ch = 192
        # X: stride-16 features with the (upsampled) stride-32 stage for a larger receptive field.
        self.neck = conv_bn_relu(ch[16] + ch[32], feat_ch)
        self.separation = SeparationModule(feat_ch, cfg.context_channels, cfg.separation_kernel)
        if cfg.use_context_prior:
            self.context = ContextPrior(cfg.context_channels, cfg.num_positions)
            fuse_in = feat_ch + 2 * cfg.context_channels
        else:
            self.context = None
            self.plain_proj = conv_bn_relu(cfg.context_channels, cfg.context_channels)
            fuse_in = feat_ch + cfg.context_channels
        dec = cfg.decoder_channels
        self.fuse = conv_bn_relu(fuse_in, 2 * dec, 3)
        self.up8 = conv_bn_relu(2 * dec + ch[8], dec, 3)
        self.up4 = conv_bn_relu(dec + ch[4], dec // 2, 3)
        self.head = nn.Conv2d(dec // 2, 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> network input."""
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> ModelOutput:
        """``images``: (B, 3, S, S) RGB in [0, 1], S = config.input_size."""
        size = self.config.input_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise ValueError(f"expected (B, 3, {size}, {size}) input, got {tuple(images.shape)}")
        feats = self.backbone(self.normalize(images))
        f16 = feats[16]
        f32 = F.interpolate(feats[32], size=f16.shape[2:], mode="bilinear", align_corners=False)
        x = self.neck(torch.cat([f16, f32], dim=1))
        x_tilde = self.separation(x)
        context_map: torch.Tensor | None = None
        if self.context is not None:
            intra, inter, context_map = self.context(x_tilde)
            y = self.fuse(torch.cat([x, intra, inter], dim=1))
        else:
            y = self.fuse(torch.cat([x, self.plain_proj(x_tilde)], dim=1))
        y = F.interpolate(y, size=feats[8].shape[2:], mode="bilinear", align_corners=False)
        y = self.up8(torch.cat([y, feats[8]], dim=1))
        y = F.interpolate(y, size=feats[4].shape[2:], mode="bilinear", align_corners=False)
        y = self.up4(torch.cat([y, feats[4]], dim=1))
        logits = F.interpolate(self.head(y), size=(size, size), mode="bilinear", align_corners=False)
        return ModelOutput(logits, context_map)
