"""Backbone registry: a name in ``ModelConfig.backbone`` -> ``BackboneSpec``.

Adding a backbone: one module that builds it and describes it with a ``BackboneSpec``, plus one
``register`` line below (or a ``register`` call from your own code before building the model).
"""

from __future__ import annotations

from clnsod_core.network.backbones import efficientnet_lite
from clnsod_core.network.backbones.spec import STRIDES, BackboneSpec

__all__ = ["BACKBONES", "STRIDES", "BackboneSpec", "get_backbone", "register"]

BACKBONES: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Make ``spec`` available by name; a name can be registered once."""
    if spec.name in BACKBONES and BACKBONES[spec.name] is not spec:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    missing = set(STRIDES) - set(spec.channels)
    if missing:
        raise ValueError(f"backbone {spec.name!r} must give features at strides {STRIDES}; missing {sorted(missing)}")
    BACKBONES[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(BACKBONES)}") from None


register(efficientnet_lite.LITE0)
