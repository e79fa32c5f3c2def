"""Model configuration: the one place that names the backbone and fixes the working resolution and head sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from clnsod_core.network.backbones import get_backbone

# Input normalisation used to be stored in the config; it now comes from the backbone's spec.
LEGACY_KEYS = frozenset({"mean", "std"})


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a CLN-SOD network.

    The context-aware map has one output channel per feature position, so the
    network is tied to one input size: ``input_size`` (square) with the context
    computed at stride 16, i.e. ``N = (input_size / 16) ** 2`` positions.
    """

    backbone: str = "efficientnet_lite0"  # a name in network.backbones.BACKBONES
    input_size: int = 320
    context_stride: int = 16
    context_channels: int = 128  # C' of the separation module
    separation_kernel: int = 11  # k of the k x 1 / 1 x k depthwise branches
    decoder_channels: int = 64
    use_context_prior: bool = True  # False: plain fusion ablation (no S, no affinity loss)

    def __post_init__(self) -> None:
        if self.input_size % 32 != 0:
            raise ValueError(f"input_size must be a multiple of 32, got {self.input_size}")
        get_backbone(self.backbone)  # unknown names fail here, with the registered ones listed
        if self.context_stride != 16:
            raise ValueError("only context_stride=16 is implemented")

    @property
    def context_side(self) -> int:
        return self.input_size // self.context_stride

    @property
    def num_positions(self) -> int:
        return self.context_side**2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)} | LEGACY_KEYS
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
        config = cls(**values)
        spec = get_backbone(config.backbone)
        for key in LEGACY_KEYS & set(data):  # files written before backbones were pluggable
            if tuple(data[key]) != getattr(spec, key):
                raise ValueError(f"{key} {data[key]} differs from backbone {spec.name}'s {getattr(spec, key)}")
        return config
