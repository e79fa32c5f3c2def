"""Where the new sky goes in every frame: the camera path smoothed, and the sky's canvas.

The new sky is placed once on a canvas in the first frame's coordinates that covers every frame's
view; each frame shows it through that frame's homography (first frame -> this frame), so the sky
stays put at infinity while the camera pans, tilts, rolls and zooms. The measured path is smoothed
over time without lag or loss of real shake: a local quadratic fit (Savitzky-Golay) over a few frames
either side, of the positions of the first frame's corners (the whole clip is analysed before
anything is rendered). It removes the tracking's jitter, while a hand-held camera's own shake, which
the sky must follow, is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMOOTH_REACH = 4  # frames either side of the local fit
MAX_CANVAS_FACTOR = 3.0  # the canvas is at most this many frame widths wide (and heights high)


def _corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)


def _apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    h = np.c_[points, np.ones(len(points))] @ homography.T
    return h[:, :2] / h[:, 2:3]


def _from_corners(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The homography taking four points to four others (direct linear solve)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    solution = np.linalg.solve(np.array(rows), np.array(rhs))
    return np.append(solution, 1.0).reshape(3, 3)


def smooth_path(homographies: list[np.ndarray], width: int, height: int,
                reach: int = SMOOTH_REACH) -> list[np.ndarray]:
    """Each frame's homography (first frame -> frame) smoothed over time: the images of the first
    frame's corners are fitted by a quadratic in time over ``reach`` frames either side (fewer at the
    clip's ends), evaluated at the frame."""
    if reach <= 0 or len(homographies) < 3:
        return [h / h[2, 2] for h in homographies]
    corners = _corners(width, height)
    tracks = np.stack([_apply(h, corners) for h in homographies]).reshape(len(homographies), -1)  # (T, 8)
    count = len(homographies)
    smoothed = []
    for t in range(count):
        lo, hi = max(0, t - reach), min(count, t + reach + 1)
        offsets = np.arange(lo, hi, dtype=np.float64) - t
        basis = np.stack([np.ones_like(offsets), offsets, offsets**2], axis=1)
        weights = np.linalg.pinv(basis)[0]  # the fitted quadratic's value at offset 0
        smoothed.append(_from_corners(corners, (weights @ tracks[lo:hi]).reshape(4, 2)))
    return smoothed


@dataclass(frozen=True)
class SkyCanvas:
    """A rectangle of the first frame's coordinates the new sky is placed on."""

    x0: int
    y0: int
    width: int
    height: int

    def frame_to_canvas(self, homography: np.ndarray) -> np.ndarray:
        """Frame pixel -> canvas pixel, for a frame whose homography (first frame -> frame) is given."""
        shift = np.array([[1, 0, -self.x0], [0, 1, -self.y0], [0, 0, 1]], np.float64)
        return shift @ np.linalg.inv(homography)


def sky_canvas(homographies: list[np.ndarray], width: int, height: int) -> SkyCanvas:
    """The smallest canvas (with a few pixels' margin) that every frame's view falls in, at most
    MAX_CANVAS_FACTOR frames wide and high around the first frame (a wilder path shows the canvas's
    repeated edge there)."""
    corners = _corners(width, height)
    seen = np.concatenate([_apply(np.linalg.inv(h), corners) for h in homographies])
    low, high = seen.min(axis=0) - 4, seen.max(axis=0) + 4
    reach = (MAX_CANVAS_FACTOR - 1) / 2
    low = np.maximum(low, [-reach * width, -reach * height])
    high = np.minimum(high, [(1 + reach) * width, (1 + reach) * height])
    x0, y0 = int(np.floor(min(low[0], 0))), int(np.floor(min(low[1], 0)))
    x1, y1 = int(np.ceil(max(high[0], width))), int(np.ceil(max(high[1], height)))
    return SkyCanvas(x0, y0, x1 - x0, y1 - y0)
