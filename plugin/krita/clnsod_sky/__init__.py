"""CLN-SOD "Replace Sky" for Krita: registers the extension when loaded by Krita.

Outside Krita (unit tests) the pure modules (``options``, ``pixels``) import without it.
"""

try:
    from krita import Krita
except ImportError:  # not running inside Krita
    Krita = None

if Krita is not None:
    from .extension import ReplaceSkyExtension

    Krita.instance().addExtension(ReplaceSkyExtension(Krita.instance()))
