"""Batch normalisation folded into the convolution before it, for inference.

In eval mode a BatchNorm2d after a Conv2d is a per-channel scale and shift of that convolution's
output, so it can be baked into the convolution's weights and bias: the same function, one pass over
the activations fewer per layer (~15 % of the network's CPU time at 320 x 320).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold (in place) every BatchNorm2d registered right after a Conv2d in the same module: the
    pairs nn.Sequential runs in order, and blocks that declare their layers in the order they apply
    them (``conv -> bn``). The folded norms become identities. Only for a model in eval mode, which
    is not trained further."""
    if model.training:
        raise ValueError("batch norms can only be folded into a model in eval mode")
    for module in model.modules():
        children = list(module.named_children())
        for (_, conv), (name, norm) in pairwise(children):
            if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                    and conv.out_channels == norm.num_features and norm.track_running_stats):
                _fold(conv, norm)
                setattr(module, name, nn.Identity())
    return model


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias, requires_grad=False)
