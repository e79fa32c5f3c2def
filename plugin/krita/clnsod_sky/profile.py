"""The document's ICC profile as bytes, which Krita's Python API does not give (only its name).

A 1x1 document in the same colour model, depth and profile is saved as .kra, which stores the
image's profile verbatim as ``<name>/annotations/icc``; the copy is read back and deleted. It
takes a fraction of a second and never touches the user's document.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile

from krita import Document, Krita

from . import bridge_client


def document_profile(doc: Document) -> bytes:
    """The ICC profile of ``doc``'s colour space (the core converts skies into it)."""
    folder = tempfile.mkdtemp(prefix="clnsod-profile-")
    probe = None
    try:
        probe = Krita.instance().createDocument(1, 1, "profile", doc.colorModel(), doc.colorDepth(),
                                                doc.colorProfile(), doc.resolution())
        if probe is None:
            raise bridge_client.BridgeError(f"Krita cannot make a document with the profile {doc.colorProfile()!r}")
        probe.setBatchmode(True)  # no dialogs
        path = os.path.join(folder, "profile.kra")
        if not probe.saveAs(path):
            raise bridge_client.BridgeError("Krita could not save a copy of the image's colour profile")
        with zipfile.ZipFile(path) as kra:
            names = [name for name in kra.namelist() if name.endswith("/annotations/icc")]
            if len(names) != 1:
                raise bridge_client.BridgeError("the image's colour profile was not found in Krita's saved copy")
            return kra.read(names[0])
    finally:
        if probe is not None:
            probe.close()
        shutil.rmtree(folder, ignore_errors=True)
