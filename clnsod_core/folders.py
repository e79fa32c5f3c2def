"""Where CLN-SOD keeps the user's files: the cache (weights, thumbnails) and the data folder (the sky
library). Platform folders from platformdirs; environment variables override them (tests, portable
installs). Light on purpose: listing skies for an editor's dialog must not wait for torch."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "CLNSOD_CACHE_DIR"
DATA_ENV = "CLNSOD_DATA_DIR"


def user_cache_root() -> Path:
    """``$CLNSOD_CACHE_DIR`` or the platform's user cache folder for clnsod."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("clnsod"))


def user_data_root() -> Path:
    """``$CLNSOD_DATA_DIR`` or the platform's user data folder for clnsod."""
    override = os.environ.get(DATA_ENV)
    return Path(override) if override else Path(platformdirs.user_data_dir("clnsod"))
