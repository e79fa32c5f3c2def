"""The one place that knows which weights exist, where they come from and how to check them.

``--weights`` accepts a registry NAME, a local PATH, or an http(s) URL. Named weights that
are not embedded are downloaded once into the user cache and verified by sha256 every
time they are used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clnsod_core.folders import user_cache_root
from clnsod_core.weights.download import (
    DownloadPolicy,
    ProgressCallback,
    download_verified,
    sha256_of,
)
from clnsod_core.weights.format import WeightsError

RELEASE_BASE = "https://github.com/clnsod/clnsod/releases/download/weights-v1/"


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    filename: str
    url: str
    sha256: str
    size: int
    input_size: int
    licence: str
    description: str
    embedded: bool = False


_NC = "non-commercial (trained on CamVid, CC BY-NC 4.0)"


def _release(name: str, sha256: str, size: int, description: str, embedded: bool = False,
             input_size: int = 320) -> WeightsEntry:
    """One of the project's own releases: the file is NAME.pt, published under RELEASE_BASE."""
    filename = f"{name}.pt"
    return WeightsEntry(name, filename, RELEASE_BASE + filename, sha256, size, input_size=input_size, licence=_NC,
                        description=description, embedded=embedded)


REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        _release(
            "clnsod-lite0-384-v6", "df030c89c247950e8883ab56a79b4dfcbc942f3f1e648ca86c916aefc074730f", 8223049,
            "Default: EfficientNet-Lite0 CLN-SOD, 384x384; v5 moved to 384 px averaged with v5's recipe "
            "trained at 384 px (embedded)",
            embedded=True, input_size=384,
        ),
        _release(
            "clnsod-lite0-320-v5", "4eb918d08497c1f4cee0507c5dcdbf75f7824f095c22395896b3e2594eba1699", 8176329,
            "v5 (the default on 2026-11-30, until v6): v4's recipe with the polygon labels given beside "
            "the refined soft targets, blended 0.7/0.3 with v1",
        ),
        _release(
            "clnsod-lite0-320-v4", "472b4887d62a6f3b20490e4705114db58072da3891b94aeb3c54ef669f792000", 8176265,
            "v4 (the default on 2026-11-30, until v5): v3 tuned one more epoch with storm clouds and misty "
            "water added to its looks, blended 0.7/0.3 with v1",
        ),
        _release(
            "clnsod-lite0-320-v3", "7c6a0318a45a0932923501af4ac2a95da9dbf8f497a05e2c804801592fc39978", 8176265,
            "v3 (the default on 2026-11-30, until v4): v2's recipe plus thin structures (trees, wires, fences, masts, "
            "reeds) drawn with exact coverage, blended 0.6/0.4 with v1",
        ),
        _release(
            "clnsod-lite0-320-v2", "c46167f55a47f479657725757161ef2ea5b62d83f8b76e4f7189f0d23711bf33", 8177225,
            "v2 (the default until 2026-11-30): v1 fine-tuned for interiors, windows, night, calm water "
            "and fine edges, blended 0.6/0.4 with v1",
        ),
        _release(
            "clnsod-lite0-320", "d88a9a0703ad293e92c8477e216dd83d0c29ae05a49d8e12b9d0de8fabd5e610", 8176073,
            "v1 (the default until 2026-11-29): skyseg train split only; calls many bright ceilings sky",
        ),
    )
    # Larger or retrained weights are added here once they are published as release assets.
}
DEFAULT_WEIGHTS = "clnsod-lite0-384-v6"


def cache_dir() -> Path:
    """Where downloaded weights go: ``user_cache_root()/weights``."""
    return user_cache_root() / "weights"


def get_entry(name: str) -> WeightsEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weights name {name!r}; known: {', '.join(REGISTRY)}") from None


def embedded_path(entry: WeightsEntry) -> Path:
    return Path(str(resources.files("clnsod_core") / "weights" / entry.filename))


def local_path(entry: WeightsEntry) -> Path:
    """Where the entry lives on this machine (inside the package or in the cache)."""
    return embedded_path(entry) if entry.embedded else cache_dir() / entry.filename


def is_verified(entry: WeightsEntry) -> bool:
    path = local_path(entry)
    return path.is_file() and sha256_of(path) == entry.sha256


def fetch(entry: WeightsEntry, url: str | None = None, progress: ProgressCallback | None = None,
          policy: DownloadPolicy = DownloadPolicy()) -> Path:
    """Verified local copy of ``entry``; downloads (from ``url`` if given) when missing or tampered."""
    if entry.embedded and url is None:
        path = embedded_path(entry)
        if not path.is_file() or sha256_of(path) != entry.sha256:
            raise WeightsError(f"{path}: embedded weights are missing or damaged; reinstall clnsod")
        return path
    dest = cache_dir() / entry.filename
    return download_verified(url or entry.url, dest, entry.sha256, entry.size or None, policy, progress)


_SHA_FRAGMENT = re.compile(r"#sha256=([0-9a-fA-F]{64})$")


def resolve_weights(spec: str | Path | None, progress: ProgressCallback | None = None,
                    policy: DownloadPolicy = DownloadPolicy()) -> Path:
    """NAME, PATH or URL (``URL#sha256=<hex>`` unless it is a registry URL) -> verified local file."""
    if spec is None:
        return fetch(get_entry(DEFAULT_WEIGHTS), progress=progress, policy=policy)
    text = str(spec)
    if text in REGISTRY:
        return fetch(REGISTRY[text], progress=progress, policy=policy)
    if text.startswith(("http://", "https://")):
        match = _SHA_FRAGMENT.search(text)
        url = text[: match.start()] if match else text
        known = next((e for e in REGISTRY.values() if e.url == url), None)
        if known is not None:
            return fetch(known, url=url, progress=progress, policy=policy)
        if match is None:
            raise WeightsError(f"{text}: a weights URL needs its checksum, e.g. {url}#sha256=<64 hex digits>")
        digest = match.group(1).lower()
        return download_verified(url, cache_dir() / "by-sha256" / f"{digest}.pt", digest, None, policy, progress)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    raise WeightsError(f"{text}: no such weights file, and not a known name ({', '.join(REGISTRY)}) or an http(s) URL")
