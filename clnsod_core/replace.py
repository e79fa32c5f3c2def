"""The one replacement API: photo + new sky (file or preset) -> composite and editor layers.

The CLI, the editor bridge and the batch engines call ``SkyReplacer``; its options are
``ReplaceOptions`` (fields declared in ``options.py``), its answer a ``ReplaceResult``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from clnsod_core.arrays import as_u8, from_unit, to_u8, unit_scale
from clnsod_core.compositing.compose import (
    Harmonisation,
    SkyPlacement,
    SkyRegion,
    composite,
    lands_pixel_for_pixel,
    lowest_sky_line,
    place_rendered_sky,
    place_sky_region,
    sky_region_height,
)
from clnsod_core.compositing.fields import small_copy
from clnsod_core.compositing.haze import haze_overlay
from clnsod_core.compositing.layers import lighting_layer
from clnsod_core.compositing.library import SkyLibrary
from clnsod_core.compositing.overlay import blend_layers
from clnsod_core.compositing.reflection import reflection_overlay
from clnsod_core.compositing.skies import PRESETS, render_preset_float
from clnsod_core.imaging.colour import SRGB, ColourSpace, convert
from clnsod_core.imaging.io import PhotoError, load_photo_with_meta
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.masking.matte import MatteOptions, matte_guide, sky_matte
from clnsod_core.options import option, part_values
from clnsod_core.runtime import run_beside

PRESET_RENDER_PIXELS = 16_000_000  # presets are rendered at the photo's size up to this many pixels
STAGES = ("network", "matte", "sky", "placement", "composite", "overlays")  # what StageCache remembers
T = TypeVar("T")

@dataclass(frozen=True)
class ReplaceOptions:
    matte: MatteOptions = field(default_factory=MatteOptions)
    placement: SkyPlacement = field(default_factory=SkyPlacement)
    harmonisation: Harmonisation = field(default_factory=Harmonisation)
    seed: int = option("seed").default  # for presets

    def validate(self) -> None:
        self.matte.validate()
        self.placement.validate()
        self.harmonisation.validate()
        option("seed").check(self.seed)

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> ReplaceOptions:
        """From the flat option names the CLI flags and the plugin protocol share (``edge_shift``,
        ``sky_scale``, ``recolour``...); every option of options.py that sets a field must be present."""
        return cls(matte=MatteOptions(**part_values("matte", values)),
                   placement=SkyPlacement(**part_values("placement", values)),
                   harmonisation=Harmonisation(**part_values("harmonisation", values)),
                   **part_values("replace", values))


@dataclass(frozen=True)
class EditorLayers:
    """The non-destructive stack an editor builds above the untouched photo, bottom to top:
    ``sky`` (opaque) with ``matte`` as its layer mask, then ``lighting`` (straight-alpha RGBA, normal
    blend) which turns "new sky over the photo" into the composite, then, when present,
    ``reflection`` and ``haze`` (straight-alpha RGBA, normal blend). Also ``batch --output layers``.
    Layers have the photo's depth (uint8 or uint16); the matte is 8-bit, as editors' masks are."""

    matte: np.ndarray  # (H, W) uint8, 255 = sky
    sky: np.ndarray  # (H, W, 3) the photo's dtype
    lighting: np.ndarray  # (H, W, 4) the photo's dtype, transparent wherever harmonisation changes nothing
    reflection: np.ndarray | None = None  # (H, W, 4) the photo's dtype; None: no reflecting water
    haze: np.ndarray | None = None  # (H, W, 4) the photo's dtype; None: no horizon haze asked for

    OVERLAY_NAMES = ("reflection", "haze")  # the optional layers above the lighting, bottom to top

    def overlays(self) -> dict[str, np.ndarray]:
        """The layers above the lighting that this photo has, bottom to top, by name."""
        return {name: getattr(self, name) for name in self.OVERLAY_NAMES if getattr(self, name) is not None}

    def sky_rgba(self) -> np.ndarray:
        """The new sky with the matte as alpha (for files: one PNG instead of a layer plus its mask)."""
        alpha = self.matte if self.sky.dtype == np.uint8 else self.matte.astype(np.uint16) * 257
        return np.concatenate([self.sky, alpha[..., None]], axis=-1)


@dataclass
class ReplaceResult:
    photo: np.ndarray  # (H, W, 3) uint8 or uint16, the untouched input
    composite: np.ndarray  # (H, W, 3), the photo's dtype and colour space
    matte: np.ndarray  # (H, W) float32, 1 = sky
    placed: SkyRegion  # the placed and adjusted new sky (float32 in [0, 1], the photo's colour space)
    sky_found: bool = True  # False: no sky in the photo; the composite is the photo itself
    reflection: np.ndarray | None = None  # (H, W, 4) RGBA layer of the photo's dtype over the water, or None
    haze: np.ndarray | None = None  # (H, W, 4) RGBA layer of the photo's dtype near the horizon, or None
    below_overlays: np.ndarray | None = None  # the composite before reflection and haze (None: none of them)

    @property
    def sky(self) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1]: the placed new sky as a full array (made on each call)."""
        return self.placed.full()

    @property
    def reflection_matte(self) -> np.ndarray:
        """(H, W) float32 in [0, 1]: how much of each pixel is the new sky's reflection (0 without water)."""
        if self.reflection is None:
            return np.zeros(self.matte.shape, np.float32)
        return self.reflection[..., 3].astype(np.float32) / np.float32(unit_scale(self.reflection.dtype))

    @classmethod
    def without_sky(cls, photo: np.ndarray) -> ReplaceResult:
        """The answer for a photo with no sky: nothing replaced, an all-zero matte, no sky pixels."""
        h, w = photo.shape[:2]
        no_sky = SkyRegion(np.zeros((1, w, 3), np.float32), h)
        return cls(photo, photo, np.zeros((h, w), np.float32), no_sky, sky_found=False)

    def editor_layers(self) -> EditorLayers:
        """The layer stack at the photo's depth: it equals ``composite`` to rounding at that depth."""
        matte = to_u8(self.matte)
        sky = self.placed.full(lambda rows: from_unit(rows, self.photo.dtype))
        below = self.composite if self.below_overlays is None else self.below_overlays
        return EditorLayers(matte, sky, lighting_layer(self.photo, sky, matte, below), self.reflection, self.haze)


@dataclass(frozen=True)
class SkyImage:
    """A sky photo and the colour space its pixels are in (its own profile; untagged = sRGB)."""

    pixels: np.ndarray  # (H, W, 3) uint8 or uint16
    space: ColourSpace = SRGB


def load_sky(spec: str | Path, max_pixels: int, library: SkyLibrary | None = None) -> SkyImage | str:
    """A preset name (returned as is), else a sky of the user's library by name, else the decoded sky
    image file; PhotoError names the sky file."""
    text = str(spec)
    if text in PRESETS:
        return text
    user_sky = (library or SkyLibrary()).get(text)
    if user_sky is not None:
        spec = user_sky.image
    try:
        pixels, meta = load_photo_with_meta(spec, max_pixels)
    except PhotoError as exc:
        raise PhotoError(exc.path, f"sky image unusable: {exc.reason}") from None
    return SkyImage(pixels, ColourSpace(meta.icc_profile))


@dataclass(frozen=True)
class PlacedSky:
    """A new sky already placed over the photo: (H, W, 3) float32 in [0, 1] in the photo's colour
    space (video moves one placed sky with the camera, frame by frame)."""

    pixels: np.ndarray


SkySource = SkyImage | np.ndarray | str | PlacedSky  # a sky photo, sRGB pixels, a preset name, or placed


class Same:
    """Compares by identity: a stage key for a sky photo or array (which cannot be compared by value
    cheaply), holding it so its id is never reused while the key is remembered."""

    def __init__(self, thing: object) -> None:
        self.thing = thing

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.thing is self.thing

    def __hash__(self) -> int:
        return id(self.thing)


class StageCache:
    """The last result of each replacement stage (``STAGES``) with the inputs it was computed from.

    One cache belongs to one photo. An editor's live preview keeps one per previewed photo, so a
    moved slider recomputes only the stages that setting reaches (``recomputed`` says which); a
    cache that keeps only "network" lets a second run on the same photo skip the network.
    """

    def __init__(self, keep: Collection[str] = STAGES) -> None:
        self._keep = frozenset(keep)
        self._entries: dict[str, tuple[Hashable, Any]] = {}
        self.recomputed: list[str] = []  # stages computed (not remembered) since the last ``clear_log``

    def get(self, stage: str, key: Hashable, compute: Callable[[], T]) -> T:
        entry = self._entries.get(stage)
        if entry is not None and entry[0] == key:
            return entry[1]
        value = compute()
        self.recomputed.append(stage)
        if stage in self._keep:
            self._entries[stage] = (key, value)
        return value

    def keeps(self, stage: str) -> bool:
        """Whether this cache remembers ``stage``'s results."""
        return stage in self._keep

    def seed(self, stage: str, key: Hashable, value: Any) -> None:
        """Remember a result computed elsewhere (the network's answer for this photo)."""
        self._entries[stage] = (key, value)

    def clear_log(self) -> None:
        self.recomputed = []


def preset_sky(name: str, width: int, region_height: int, seed: int) -> np.ndarray:
    """A preset for a sky region of ``width`` x ``region_height``: at that size (crisp at 100 %; placement
    need not resample it) up to PRESET_RENDER_PIXELS; the sky of a 100 MP panorama is rendered smaller
    and upscaled by the placement, in bands."""
    scale = min(1.0, (PRESET_RENDER_PIXELS / (width * region_height)) ** 0.5)
    return render_preset_float(name, max(8, round(width * scale)), max(8, round(region_height * scale)), seed)


def _render_into(allocate: Callable[[], np.ndarray], name: str, width: int, height: int, seed: int,
                 space: ColourSpace) -> None:
    """Preset ``name`` rendered into the rows ``allocate`` makes ((height, width, 3) float32) in the
    photo's colour space."""
    rows = render_preset_float(name, width, height, seed, out=allocate)
    converted = convert(rows, SRGB, space)  # the array itself for an sRGB photo
    if converted is not rows:
        rows[...] = converted


def overlay_layers(photo: np.ndarray, matte: np.ndarray, placed: SkyRegion,
                   harmonisation: Harmonisation) -> dict[str, np.ndarray]:
    """The reflection in calm water and the horizon haze this photo gets, as straight-alpha layers of
    its dtype, bottom to top; both look at one small copy of the photo, made only if either is on."""
    if harmonisation.reflection <= 0 and harmonisation.haze <= 0:
        return {}
    guide = as_u8(photo)
    small = small_copy(guide, matte)
    return {name: overlay.layer(photo.dtype) for name, overlay in (
        ("reflection", reflection_overlay(guide, small, matte, placed, harmonisation.reflection)),
        ("haze", haze_overlay(small, matte, placed, harmonisation.haze))) if overlay is not None}


class SkyReplacer:
    """Photos are RGB arrays (uint8 or uint16) in their own colour space (``space``, None = sRGB)."""

    def __init__(self, masker: SkyMasker) -> None:
        self.masker = masker
        self._converted: tuple[SkyImage, ColourSpace, np.ndarray] | None = None  # last sky conversion

    def mask(self, photo: np.ndarray, options: MatteOptions = MatteOptions(),
             space: ColourSpace | None = None, cache: StageCache | None = None) -> tuple[np.ndarray, bool]:
        """Edge-aware full-resolution sky matte, and whether the photo has sky at all."""
        options.validate()
        cache = cache if cache is not None else StageCache(keep=())
        eight_bit = as_u8(photo)  # what the network and the matte read: one 8-bit copy of a 16-bit photo, not two

        def compute() -> tuple[np.ndarray, bool]:
            # The network's and the matte's reduced copies of the photo (Pillow, one core each) are made
            # side by side, from one Pillow copy of the photo.
            shared = Image.fromarray(eight_bit)
            guide, prob = run_beside(lambda: matte_guide(shared, options),
                                     lambda: cache.get("network", (), lambda: self.network(shared, space)))
            return sky_matte(eight_bit, prob, options, guide)

        return cache.get("matte", options, compute)

    def network(self, photo: np.ndarray | Image.Image, space: ColourSpace | None = None) -> Any:
        """The network's sky probability for ``photo`` (or its 8-bit Pillow image) at its working size
        (what the matte refines)."""
        return self.masker.predict_working_size([photo], [space])[0]

    def matte(self, photo: np.ndarray, options: MatteOptions = MatteOptions(),
              space: ColourSpace | None = None) -> np.ndarray:
        """Edge-aware full-resolution sky matte (all zero without sky)."""
        return self.mask(photo, options, space)[0]

    def replace(self, photo: np.ndarray, sky: SkySource, options: ReplaceOptions = ReplaceOptions(),
                on_stage: Callable[[str], None] | None = None, space: ColourSpace | None = None,
                cache: StageCache | None = None, matte: np.ndarray | None = None,
                gain: np.ndarray | None = None) -> ReplaceResult:
        """``on_stage`` is told when each slow stage starts (for progress reporting). The result is in
        the photo's dtype and colour space; the sky is converted into that space first. ``cache``
        (one per photo) remembers the stages, so a call with other options redoes only what they change.
        Video gives what it keeps steady over frames: ``matte`` (then the network and the matte stages
        are skipped; an all-zero matte means no sky) and ``gain``, the foreground's recolour/relight gain."""
        options.validate()
        space = space or SRGB
        cache = cache if cache is not None else StageCache(keep=())
        report = on_stage or (lambda _stage: None)
        report("computing the sky matte")
        matte_key: Hashable = options.matte  # what the stages below depend on of the matte
        if matte is None:
            matte, sky_found = self.mask(photo, options.matte, space, cache)
        else:
            matte_key, sky_found = ("given", Same(matte)), bool(matte.any())
        if not sky_found:
            return ReplaceResult.without_sky(photo)
        report("placing the new sky")
        h, w = matte.shape
        bottom = lowest_sky_line(matte)
        if isinstance(sky, PlacedSky):
            placed, placement_key = SkyRegion.of(sky.pixels), ("placed", Same(sky.pixels))
        else:
            placed, placement_key = self._placed(sky, h, w, bottom, options, space, cache)
        report("blending the foreground")  # with the reflections and haze
        harmonisation = options.harmonisation
        gain_key = None if gain is None else tuple(float(g) for g in gain)
        blend_key = (matte_key, placement_key, replace_fields(harmonisation, reflection=0.0, haze=0.0), gain_key)
        overlay_key = (matte_key, placement_key, harmonisation.reflection, harmonisation.haze)
        # Both read the photo, the matte and the placed sky only: the overlays' search (mostly one
        # core) runs beside the composite.
        found, (comp, _) = run_beside(
            lambda: cache.get("overlays", overlay_key, lambda: overlay_layers(photo, matte, placed, harmonisation)),
            lambda: cache.get("composite", blend_key,
                              lambda: composite(photo, matte, placed, harmonisation, gain=gain, foreground=False)))
        if not found:
            return ReplaceResult(photo, comp, matte, placed)
        final = blend_layers(comp, list(found.values()))
        return ReplaceResult(photo, final, matte, placed, reflection=found.get("reflection"),
                             haze=found.get("haze"), below_overlays=comp)

    def place(self, sky: SkyImage | np.ndarray | str, height: int, width: int, sky_bottom: int,
              options: ReplaceOptions = ReplaceOptions(), space: ColourSpace | None = None) -> np.ndarray:
        """The new sky placed over a ``width`` x ``height`` picture whose sky ends at row ``sky_bottom``:
        (height, width, 3) float32 in [0, 1] in ``space`` (video places it once, on a canvas that
        covers the camera's whole path)."""
        options.validate()
        return self._placed(sky, height, width, sky_bottom, options, space or SRGB, StageCache(keep=()))[0].full()

    def _placed(self, sky: SkyImage | np.ndarray | str, h: int, w: int, bottom: int, options: ReplaceOptions,
                space: ColourSpace, cache: StageCache) -> tuple[SkyRegion, Hashable]:
        """The "sky" and "placement" stages: the placed sky and the key it is remembered by."""
        region = sky_region_height(h, bottom)
        sky_key: Hashable = (("preset", sky, w, region, options.seed, space) if isinstance(sky, str)
                             else ("image", Same(sky), space))
        placement_key = (sky_key, h, w, bottom, options.placement)
        if isinstance(sky, str):
            if (w * region <= PRESET_RENDER_PIXELS and not cache.keeps("sky")
                    and lands_pixel_for_pixel(options.placement)):
                # Rendered straight into the placed sky: no second sky in memory (kept apart
                # only for an editor, whose placement sliders move the same rendered sky).
                placed = cache.get("placement", placement_key, lambda: place_rendered_sky(
                    lambda allocate: _render_into(allocate, sky, w, region, options.seed, space), h, w, bottom,
                    options.placement))
                return placed, placement_key
            sky_pixels = cache.get("sky", sky_key,
                                   lambda: convert(preset_sky(sky, w, region, options.seed), SRGB, space))
        else:
            sky_pixels = cache.get("sky", sky_key, lambda: self._sky_in(sky, space) if isinstance(sky, SkyImage)
                                   else convert(sky, SRGB, space))
        placed = cache.get("placement", placement_key,
                           lambda: place_sky_region(sky_pixels, h, w, bottom, options.placement))
        return placed, placement_key

    def _sky_in(self, sky: SkyImage, space: ColourSpace) -> np.ndarray:
        """The sky photo's pixels in ``space``; the last conversion is kept (a batch shares one sky)."""
        cached = self._converted
        if cached is not None and cached[0] is sky and cached[1] == space:
            return cached[2]
        pixels = convert(sky.pixels, sky.space, space)
        self._converted = (sky, space, pixels)
        return pixels
