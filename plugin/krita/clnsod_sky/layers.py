"""Builds the result layers in the user's document, above the untouched original layer.

Undo: libkis has no undo-macro API (5.1 or 5.2), and every addChildNode / Krita action is its own undo
command, so a replacement is 3 undo steps (add "New sky", add its "Sky mask", add "Foreground lighting").
Building the stack in a hidden scratch document and adding it with one call gives a single step, but on
5.1 that needs a temporary view for the mask action, and closing it crashed Krita 5.1 (queued Layers
docker and OpenGL canvas updates for the closed view), so it is not done.
"""

from __future__ import annotations

from krita import Document, Krita, Node, Selection

from .pixels import LIGHTING_LAYER, MASK_NAME, SKY_LAYER, gray_layer_bytes


def _selection(matte: bytes, width: int, height: int) -> Selection:
    selection = Selection()
    selection.setPixelData(matte, 0, 0, width, height)
    return selection


def _paint_layer(doc: Document, name: str, pixels: bytes, width: int, height: int) -> Node:
    node = doc.createNode(name, "paintlayer")
    node.setPixelData(pixels, 0, 0, width, height)  # before it joins the image: no undo entry of its own
    return node


def _add_mask(doc: Document, layer: Node, matte: bytes, width: int, height: int) -> None:
    """A transparency mask named MASK_NAME under ``layer`` holding the matte (5.2 API, else 5.1 action).

    Krita 5.1 has no Python API for transparency masks (createNode(..., "transparencymask") gives a
    mask without a selection that breaks saving): its "add transparency mask" action fills the new mask
    from the document selection, which is set to the matte and then put back as it was.
    """
    if hasattr(doc, "createTransparencyMask"):  # Krita 5.2+
        mask = doc.createTransparencyMask(MASK_NAME)
        mask.setSelection(_selection(matte, width, height))
        layer.addChildNode(mask, None)
        doc.waitForDone()
        return
    previous = doc.selection()
    doc.setSelection(_selection(matte, width, height))
    doc.setActiveNode(layer)
    doc.waitForDone()
    Krita.instance().action("add_new_transparency_mask").trigger()
    doc.waitForDone()
    doc.setSelection(previous)  # None clears it again
    doc.waitForDone()
    masks = [child for child in layer.childNodes() if child.type() == "transparencymask"]
    if len(masks) != 1:
        raise RuntimeError("Krita did not create the sky mask (is the image shown in the active view?)")
    masks[0].setName(MASK_NAME)


def add_replace_result(doc: Document, above: Node, matte: bytes, sky: bytes, lighting: bytes) -> Node:
    """Adds SKY_LAYER (with child mask MASK_NAME) above ``above`` and LIGHTING_LAYER above that.

    ``above`` and its pixels are not touched; returns the sky layer.
    """
    width, height = doc.width(), doc.height()
    parent = _parent_of(doc, above)
    sky_layer = _paint_layer(doc, SKY_LAYER, sky, width, height)
    parent.addChildNode(sky_layer, above)
    doc.waitForDone()
    _add_mask(doc, sky_layer, matte, width, height)
    lighting_layer = _paint_layer(doc, LIGHTING_LAYER, lighting, width, height)
    parent.addChildNode(lighting_layer, sky_layer)
    doc.waitForDone()
    doc.refreshProjection()
    return sky_layer


def add_mask_result(doc: Document, above: Node, matte: bytes) -> Node:
    """Adds a grayscale paint layer MASK_NAME (white = sky) above ``above`` and selects the sky."""
    width, height = doc.width(), doc.height()
    layer = _paint_layer(doc, MASK_NAME, gray_layer_bytes(matte), width, height)
    _parent_of(doc, above).addChildNode(layer, above)
    doc.waitForDone()
    doc.setSelection(_selection(matte, width, height))
    doc.waitForDone()
    doc.refreshProjection()
    return layer


def _parent_of(doc: Document, node: Node) -> Node:
    parent: Node | None = node.parentNode()
    return parent if parent is not None else doc.rootNode()

