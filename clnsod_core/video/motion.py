"""The camera's rotation and zoom from frame to frame, as homographies (for a sky at infinity).

A sky at infinity moves only with the camera's rotation and zoom, which map one frame to another by
a homography. It is estimated from corners tracked on small grey frames (pyramidal Lucas-Kanade)
anywhere in the frame: on distant land and in the sky when it has any
texture, so clear or overcast skies with no features are handled by the land, and land with no
features by the clouds. Each frame's corners are tracked from the previous frame (forward-backward
checked), then refined directly against the keyframe's picture (tracks whose answers disagree are
dropped, and errors do not pile up frame after frame), and the homography is fitted by
RANSAC (moving cars, people and birds are outliers). The upper part of the frame, usually the most
distant, is preferred when it has enough corners (near land shows parallax when the camera moves).
A new keyframe is taken when too few corners survive or the view has turned or zoomed too far from it.
When the corners lie almost on one line (a thin horizon under a featureless sky) a homography is not
determined; the camera's rotation, zoom and focal length are fitted instead (5 parameters, the focal
length held near its last estimate, starting from a typical field of view), which such corners do
determine: a pan stretches a horizon line by an amount that depends on the focal length. Where nothing can be fitted (a frame of pure fog), the last
motion is carried on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRACK_SIDE = 960  # long side of the grey frames the camera is tracked on
MAX_CORNERS = 700
CORNER_QUALITY = 0.01  # weakest corner kept, relative to the strongest (fainter ones are mostly noise and JPEG blocks)
MIN_POINTS = 40  # fewer surviving corners than this: take a new keyframe
KEEP_SHARE = 0.5  # ... or fewer than this share of the keyframe's corners
REKEY_SCALE = 0.06  # ... or the view has zoomed by this much since the keyframe
REKEY_ANGLE = 0.05  # ... or rolled by this many radians
RANSAC_PX = 1.0  # inlier distance at tracking size
AGREE_PX = 0.7  # a track whose forward and backward, or frame-to-frame and keyframe, answers differ more is dropped
DISTANT_SHARE = 0.6  # corners in this upper share of the frame are tried first
WELL_SPREAD = 0.12  # corners whose narrower spread (std) is below this share of the frame's short side lie on a line
ASSUMED_FOCAL = 1.0  # focal length in frame widths (53 degrees across) the rotation fit starts from
FOCAL_PRIOR_PX = 20.0  # a 5 % change of the focal length costs as much as 1 px of misfit
LK_PARAMS = {"winSize": (21, 21), "maxLevel": 3,
             "criteria": (3, 30, 0.01)}  # cv2.TERM_CRITERIA_EPS | COUNT, 30 iterations, 0.01 px


def require_cv2():  # noqa: ANN201 - the cv2 module
    try:
        import cv2
    except ImportError:
        from clnsod_core.video.container import VideoError
        raise VideoError("clnsod video", "video needs OpenCV, which is not installed here; "
                         "install CLN-SOD with the video extra: pip install -e '.[video]'") from None
    return cv2


def tracking_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the grey frames the camera is tracked on, for a full-resolution size."""
    scale = min(1.0, TRACK_SIDE / max(width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """Full-resolution pixel -> tracking pixel (pixel centres line up)."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


@dataclass
class _Keyframe:
    grey: np.ndarray
    points: np.ndarray  # (N, 1, 2) float32 corners in the keyframe
    to_frame: np.ndarray  # homography reference -> keyframe (tracking pixels)


class CameraTracker:
    """Feed upright grey frames of ``tracking_size`` in order; ``update`` returns the homography from the first
    frame to this one, in full-resolution pixels, and whether it was measured (not carried on)."""

    def __init__(self, width: int, height: int) -> None:
        """``width`` x ``height``: the full-resolution upright frame size."""
        self.cv2 = require_cv2()
        small_w, small_h = tracking_size(width, height)
        self._to_small = scale_matrix(small_w / width, small_h / height)
        self._to_full = np.linalg.inv(self._to_small)
        self._focal = ASSUMED_FOCAL * small_w  # focal length (tracking px) the rotation fit last found
        self._key: _Keyframe | None = None
        self._prev_grey: np.ndarray | None = None
        self._prev_points: np.ndarray | None = None  # keyframe corners as tracked into the previous frame
        self._key_index: np.ndarray | None = None  # which keyframe corner each previous point is
        self._last = np.eye(3)  # reference -> previous frame (tracking px)
        self._step = np.eye(3)  # last frame-to-frame motion

    def update(self, grey: np.ndarray) -> tuple[np.ndarray, bool]:
        if self._key is None:
            self._new_key(grey, np.eye(3))
            return np.eye(3), True
        estimate, measured = self._measure(grey)
        if not measured:
            estimate = self._step @ self._last
        self._step = estimate @ np.linalg.inv(self._last)
        self._last = estimate
        self._prev_grey = grey
        if not measured or self._needs_new_key(estimate):
            self._new_key(grey, estimate)
        return self._to_full @ estimate @ self._to_small, measured

    def _measure(self, grey: np.ndarray) -> tuple[np.ndarray, bool]:
        """Reference -> this frame (tracking px), from the keyframe's corners tracked here."""
        cv2, key = self.cv2, self._key
        assert key is not None and self._prev_points is not None and self._key_index is not None
        if len(self._prev_points) < 8:
            return self._last, False
        # Frame to frame first (small steps), checked backward, then refined against the keyframe below.
        forward, ok, _ = cv2.calcOpticalFlowPyrLK(self._prev_grey, grey, self._prev_points, None, **LK_PARAMS)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey, self._prev_grey, forward, None, **LK_PARAMS)
        returned = np.linalg.norm((back - self._prev_points)[:, 0], axis=1) < AGREE_PX
        good = (ok[:, 0] == 1) & (ok_back[:, 0] == 1) & returned & _inside(forward, grey.shape)
        index = self._key_index[good]
        if len(index) < 8:
            self._prev_points, self._key_index = forward[good], index
            return self._last, False
        # Refine against the keyframe itself (tracks then do not drift frame after frame).
        start = key.points[index]
        refined, ok_ref, _ = cv2.calcOpticalFlowPyrLK(key.grey, grey, start, forward[good].copy(),
                                                      flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **LK_PARAMS)
        agree = (ok_ref[:, 0] == 1) & (np.linalg.norm((refined - forward[good])[:, 0], axis=1) < AGREE_PX)
        points, index, start = refined[agree], index[agree], start[agree]
        homography = _fit(cv2, start, points, grey.shape, self._focal)
        if homography is None:
            self._prev_points, self._key_index = points, index
            return self._last, False
        model, inliers, focal = homography
        self._focal = focal
        self._prev_points, self._key_index = points[inliers], index[inliers]
        return model @ key.to_frame, True

    def _needs_new_key(self, estimate: np.ndarray) -> bool:
        assert self._key is not None and self._prev_points is not None
        survivors = len(self._prev_points)
        if survivors < MIN_POINTS or survivors < KEEP_SHARE * len(self._key.points):
            return True
        relative = estimate @ np.linalg.inv(self._key.to_frame)
        relative = relative / relative[2, 2]
        linear = relative[:2, :2]
        zoom = abs(np.linalg.det(linear)) ** 0.5
        angle = abs(np.arctan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1]))
        return abs(zoom - 1) > REKEY_SCALE or angle > REKEY_ANGLE

    def _new_key(self, grey: np.ndarray, to_frame: np.ndarray) -> None:
        cv2 = self.cv2
        side = max(grey.shape)
        corners = cv2.goodFeaturesToTrack(grey, MAX_CORNERS, CORNER_QUALITY, max(4, side // 120), blockSize=7)
        points = np.zeros((0, 1, 2), np.float32) if corners is None else corners.astype(np.float32)
        if len(points):
            points = cv2.cornerSubPix(grey, points, (5, 5), (-1, -1), (3, 20, 0.01))
        self._key = _Keyframe(grey, points, to_frame)
        self._prev_grey, self._prev_points = grey, points
        self._key_index = np.arange(len(points))
        self._last = to_frame


def _inside(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape[:2]
    p = points[:, 0]
    return (p[:, 0] >= 0) & (p[:, 1] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] <= h - 1)


def _fit(cv2, source: np.ndarray, target: np.ndarray, shape: tuple[int, ...],  # noqa: ANN001
         focal: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """RANSAC homography source -> target, the inlier mask and the focal length (``focal`` unless the
    rotation model re-estimated it), distant (upper) corners first; the rotation model where the
    corners lie almost on a line."""
    height = shape[0]
    distant = target[:, 0, 1] < DISTANT_SHARE * height
    for chosen, needed in ((distant, MIN_POINTS), (np.ones(len(target), bool), 8)):
        if chosen.sum() < needed:
            continue
        if not _well_spread(target[chosen], shape):
            return _fit_rotation(cv2, source, target, shape, focal)
        model, mask = cv2.findHomography(source[chosen], target[chosen], cv2.RANSAC, RANSAC_PX,
                                         maxIters=2000, confidence=0.999)
        if model is None:
            continue
        # Every corner (near ones too) that agrees with the distant scene's motion is an inlier.
        inliers = _residuals(model, source, target) < RANSAC_PX
        if inliers.sum() >= 8:
            refined, _ = cv2.findHomography(source[inliers], target[inliers], 0)
            return (refined if refined is not None else model), inliers, focal
    return None


def _well_spread(points: np.ndarray, shape: tuple[int, ...]) -> bool:
    centred = points[:, 0] - points[:, 0].mean(axis=0)
    narrow = np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(centred))
    return bool(narrow >= WELL_SPREAD * min(shape[:2]))


def _residuals(model: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    p = np.c_[source[:, 0], np.ones(len(source))] @ model.T
    return np.linalg.norm(p[:, :2] / p[:, 2:3] - target[:, 0], axis=1)


def rotation_homography(params: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """K' R K^-1 for a camera of focal length ``focal * exp(params[4])`` turned by the rotation vector
    params[:3] and zoomed by exp(params[3])."""
    return rotation_homographies(np.asarray(params, np.float64)[None], focal, cx, cy)[0]


def rotation_homographies(params: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """``rotation_homography`` for each row of ``params`` (k, 5): (k, 3, 3)."""
    k = len(params)
    f = focal * np.exp(params[:, 4])
    zoomed_f = f * np.exp(params[:, 3])
    to_camera = np.zeros((k, 3, 3))  # K^-1
    to_camera[:, 0, 0] = to_camera[:, 1, 1] = 1 / f
    to_camera[:, 0, 2], to_camera[:, 1, 2], to_camera[:, 2, 2] = -cx / f, -cy / f, 1.0
    to_pixels = np.zeros((k, 3, 3))  # K'
    to_pixels[:, 0, 0] = to_pixels[:, 1, 1] = zoomed_f
    to_pixels[:, 0, 2], to_pixels[:, 1, 2], to_pixels[:, 2, 2] = cx, cy, 1.0
    angle = np.linalg.norm(params[:, :3], axis=1)
    axis = params[:, :3] / np.maximum(angle, 1e-300)[:, None]
    cross = np.zeros((k, 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross[:, 1, 0], cross[:, 2, 0], cross[:, 2, 1] = axis[:, 2], -axis[:, 1], axis[:, 0]
    rotation = (np.eye(3) + np.sin(angle)[:, None, None] * cross
                + (1 - np.cos(angle))[:, None, None] * cross @ cross)  # Rodrigues; the identity at angle 0
    return to_pixels @ rotation @ to_camera


def _fit_rotation(cv2, source: np.ndarray, target: np.ndarray, shape: tuple[int, ...],  # noqa: ANN001
                  focal: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Rotation, zoom and focal length (Gauss-Newton from a RANSAC similarity's inliers) for corners
    on a line; the focal length is held near ``focal`` where the corners say little about it."""
    if len(source) < 4:
        return None
    similarity, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if similarity is None:
        return None
    inliers = mask[:, 0].astype(bool)
    h, w = shape[:2]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    params = np.array([0.0, 0.0, np.arctan2(similarity[1, 0], similarity[0, 0]),
                       0.5 * np.log(max(abs(np.linalg.det(similarity[:, :2])), 1e-6)), 0.0])
    for _ in range(3):  # fit on the inliers, then take every corner that agrees, twice more
        if inliers.sum() < 4:
            return None
        params = _gauss_newton(params, source[inliers], target[inliers], focal, cx, cy)
        inliers = _residuals(rotation_homography(params, focal, cx, cy), source, target) < 2 * RANSAC_PX
    return rotation_homography(params, focal, cx, cy), inliers, focal * float(np.exp(params[4]))


def _gauss_newton(params: np.ndarray, source: np.ndarray, target: np.ndarray, focal: float, cx: float,
                  cy: float, steps: int = 8) -> np.ndarray:
    points = np.c_[source[:, 0], np.ones(len(source))]
    goal = target[:, 0].ravel()
    count = len(params)
    # Forward differences (the model is smooth and the steps are tiny): the residuals at the
    # parameters and at each of them nudged, all in one pass.
    nudges = np.vstack([np.zeros(count), 1e-7 * np.eye(count)])

    def residuals(candidates: np.ndarray) -> np.ndarray:
        models = rotation_homographies(candidates, focal, cx, cy)
        q = points @ models.transpose(0, 2, 1)  # (k, n, 3)
        moved = (q[..., :2] / q[..., 2:3]).reshape(len(candidates), -1) - goal
        return np.concatenate([moved, FOCAL_PRIOR_PX * candidates[:, 4:5]], axis=1)

    for _ in range(steps):
        values = residuals(params + nudges)
        r = values[0]
        jacobian = ((values[1:] - r) / 1e-7).T
        step, *_ = np.linalg.lstsq(jacobian, -r, rcond=None)
        params = params + step
        if np.abs(step).max() < 1e-8:
            break
    return params
