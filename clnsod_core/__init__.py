"""CLN-SOD: offline sky masks and sky replacement with a context-aware network."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
