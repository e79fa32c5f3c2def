"""Reading and writing CLN-SOD weight files.

A weights file is a plain ``torch.save`` of ``{"format", "config", "state_dict", "meta"}``
holding only tensors, strings and numbers; it is always read with ``weights_only=True``
so a file can never run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clnsod_core.files import write_atomic

if TYPE_CHECKING:
    from clnsod_core.network.model import CLNSOD

# torch and the network are imported where a file is read or written, not here: the CLI names
# WeightsError (and lists weights) without paying torch's start-up.

FORMAT = "clnsod-weights-1"


class WeightsError(ValueError):
    """A weights file is unreadable, unsafe or does not fit the model."""


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through the one atomic writer (weights files and training checkpoints)."""
    import torch

    write_atomic(path, lambda handle: torch.save(obj, handle))


def save_weights(model: CLNSOD, path: Path, meta: dict[str, Any] | None = None, half: bool = True) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_torch({"format": FORMAT, "config": model.config.to_dict(), "state_dict": state, "meta": meta or {}}, path)


def read_weights(path: Path) -> dict[str, Any]:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except Exception as exc:  # unpickling errors have many types; all mean "refuse"
        raise WeightsError(f"{path}: not a loadable weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a CLN-SOD weights file (missing format tag {FORMAT!r})")
    return data


def load_model(path: Path) -> CLNSOD:
    """Build the network described by the file and load its weights (fp32, eval mode)."""
    from clnsod_core.network.config import ModelConfig
    from clnsod_core.network.model import CLNSOD

    data = read_weights(path)
    try:
        config = ModelConfig.from_dict(data["config"])
        model = CLNSOD(config)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()})
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise WeightsError(f"{path}: weights do not fit the CLN-SOD model ({exc})") from exc
    return model.eval()
