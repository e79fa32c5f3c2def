"""A matte that holds still: each frame's matte fused with the previous result, moved with the camera.

Per-frame mattes shimmer: sensor noise and compression change the network's answer and the edge
refinement a little in every frame, and an unsure region (calm water, haze) can flip as a whole.
The previous fused matte is warped by the camera's motion from that frame to this one (``motion.py``)
and blended with this frame's matte. Whether to trust that history is decided by the *pictures*, not
the mattes: where the previous frame, moved the same way, matches this frame (up to the clip's own
noise level), the scene did not change there, so a change of the matte is noise and the history
dominates (noise averages out over several frames); where the pictures differ (something moved,
parallax, a flash, a wrong camera estimate) this frame's matte is taken as it is, so moving edges do
not lag.
"""

from __future__ import annotations

import numpy as np

from clnsod_core.video.motion import require_cv2, scale_matrix

HISTORY_WEIGHT = 0.85  # share of the (moved) previous matte where the scene did not change
NOISE_FACTOR = 3.0  # picture differences up to this many times the clip's typical one are noise
CHANGE_RAMP = 12.0  # grey levels above the noise level over which trust in the history falls to zero
PATCH_FRACTION = 0.003  # the picture difference is averaged over a patch this share of the long side


class MatteStabiliser:
    """Feed mattes in frame order with small grey pictures of the frames (any fixed size) and the
    motion from the previous frame to each (full resolution; None at a cut or for the first frame)."""

    def __init__(self, history_weight: float = HISTORY_WEIGHT) -> None:
        if not 0 <= history_weight < 1:
            raise ValueError(f"history weight must be in [0, 1), got {history_weight}")
        self.cv2 = require_cv2()
        self.history_weight = history_weight
        self._previous: np.ndarray | None = None
        self._previous_grey: np.ndarray | None = None

    def update(self, matte: np.ndarray, grey: np.ndarray, motion: np.ndarray | None) -> np.ndarray:
        """The fused matte for this frame ((H, W) float32 in [0, 1])."""
        previous, previous_grey = self._previous, self._previous_grey
        self._previous_grey = grey
        if (previous is None or previous_grey is None or motion is None or previous.shape != matte.shape
                or previous_grey.shape != grey.shape or self.history_weight == 0):
            self._previous = matte
            return matte
        cv2 = self.cv2
        h, w = matte.shape
        band = _rows_with_sky(matte, previous, motion)
        if band is None:  # no sky in this matte nor where the previous one's lands: nothing to fuse
            self._previous = matte
            return matte
        y0, y1 = band
        # Only these rows: elsewhere both mattes are 0, and so is the fused one.
        to_band = np.array([[1, 0, 0], [0, 1, -y0], [0, 0, 1]], np.float64)
        moved = cv2.warpPerspective(previous, to_band @ motion, (w, y1 - y0), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        trust = self._unchanged(grey, previous_grey, motion, (w, h))
        keep = cv2.resize(trust, (w, h), interpolation=cv2.INTER_LINEAR)[y0:y1]
        keep *= np.float32(self.history_weight)
        current = matte[y0:y1]
        mixed = moved - current  # current + keep * (moved - current), in place
        mixed *= keep
        mixed += current
        # The same snapping as the single-frame matte (and a clamp): exact 0 and 1 stay exact.
        snap = np.float32(2 / 255)
        np.copyto(mixed, np.float32(0), where=mixed < snap)
        np.copyto(mixed, np.float32(1), where=mixed > 1 - snap)
        fused = np.zeros_like(matte)
        fused[y0:y1] = mixed
        self._previous = fused
        return fused

    def _unchanged(self, grey: np.ndarray, previous_grey: np.ndarray, motion: np.ndarray,
                   full_size: tuple[int, int]) -> np.ndarray:
        """(h, w) float32 at the grey pictures' size: 1 where the previous picture, moved with the
        camera, matches this one up to the noise level, falling to 0 where it clearly differs."""
        cv2 = self.cv2
        gh, gw = grey.shape
        to_small = scale_matrix(gw / full_size[0], gh / full_size[1])
        small_motion = to_small @ motion @ np.linalg.inv(to_small)
        moved = cv2.warpPerspective(previous_grey, small_motion, (gw, gh), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        difference = cv2.absdiff(grey, moved).astype(np.float32)
        radius = max(1, round(PATCH_FRACTION * max(gh, gw)))
        difference = cv2.blur(difference, (2 * radius + 1, 2 * radius + 1))
        noise = float(np.median(difference))
        low = NOISE_FACTOR * noise + 1.0
        trust = np.clip(1.0 - (difference - low) / CHANGE_RAMP, 0.0, 1.0)
        # What came into view (and a pixel beside it, which the warps blend with the edge) has no history.
        seen = cv2.warpPerspective(np.ones((gh, gw), np.uint8), small_motion, (gw, gh), flags=cv2.INTER_NEAREST)
        seen = cv2.erode(seen, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        trust[seen == 0] = 0
        return trust


def _rows_with_sky(matte: np.ndarray, previous: np.ndarray, motion: np.ndarray) -> tuple[int, int] | None:
    """The rows (y0, y1) of this frame holding any sky of ``matte`` or of ``previous`` moved by
    ``motion`` (its sky's bounding box carried over, with a pixel of slack for the interpolation);
    None when neither has any."""
    h = matte.shape[0]
    spans = []
    rows = np.flatnonzero(matte.any(axis=1))
    if rows.size:
        spans.append((int(rows[0]), int(rows[-1]) + 1))
    previous_rows = np.flatnonzero(previous.any(axis=1))
    if previous_rows.size:
        columns = np.flatnonzero(previous.any(axis=0))
        x0, x1, y0, y1 = columns[0] - 1, columns[-1] + 1, previous_rows[0] - 1, previous_rows[-1] + 1
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ motion.T
        if np.all(corners[:, 2] > 1e-6):
            ys = corners[:, 1] / corners[:, 2]
            spans.append((int(np.floor(ys.min())) - 1, int(np.ceil(ys.max())) + 2))
        else:  # the view turned past the previous sky's edge (not between two frames): every row
            spans.append((0, h))
    if not spans:
        return None
    y0, y1 = max(0, min(s[0] for s in spans)), min(h, max(s[1] for s in spans))
    return (y0, y1) if y1 > y0 else None


def tracking_grey(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A small grey picture of an RGB frame (uint8) at ``size`` (width, height), as the stabiliser reads it."""
    cv2 = require_cv2()
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if small.dtype != np.uint8:
        small = (small.astype(np.float32) * np.float32(255 / 65535) + 0.5).astype(np.uint8)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
