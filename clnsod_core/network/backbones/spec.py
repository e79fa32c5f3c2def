"""What the network needs to know about a backbone (in the style of timm's model registry)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

STRIDES = (4, 8, 16, 32)  # the feature maps every backbone returns, by output stride


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone: how to build it, what it returns, what input it expects, where its ImageNet weights are.

    ``build()`` returns a module whose ``forward(x)`` gives ``{stride: features}`` for every stride
    in ``STRIDES`` (channel counts in ``channels``); ``mean`` / ``std`` normalise RGB in [0, 1] the
    way its pre-training did; ``imagenet()`` returns its ImageNet state dict (None: none exists).
    """

    name: str
    build: Callable[[], nn.Module]
    channels: Mapping[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    imagenet: Callable[[], dict[str, torch.Tensor]] | None = None

    def load_imagenet(self, backbone: nn.Module) -> None:
        """Load the ImageNet weights into a built backbone; every backbone tensor must be covered."""
        if self.imagenet is None:
            raise ValueError(f"backbone {self.name!r} has no ImageNet weights; start from CLN-SOD weights instead")
        state = self.imagenet()
        own = backbone.state_dict()
        usable = {k: v for k, v in state.items() if k in own}  # classifier heads are ignored
        missing = sorted(set(own) - set(usable))
        if missing:
            raise ValueError(f"ImageNet weights lack {len(missing)} backbone tensors, e.g. {missing[:3]}")
        for key, value in usable.items():
            if own[key].shape != value.shape:
                raise ValueError(f"shape mismatch for {key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
        backbone.load_state_dict(usable, strict=True)
