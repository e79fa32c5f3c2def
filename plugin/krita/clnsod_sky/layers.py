"""Builds the result layers in the user's document, above the untouched original layer.

Layout (PROTOCOL.md section 5, wrapped in one group): a pass-through group layer GROUP_LAYER right
above the original, holding SKY_LAYER (with its transparency mask MASK_NAME), LIGHTING_LAYER above
it and, when the core made them, "Reflection" and "Horizon haze" on top. A pass-through group composites its children straight onto the layers below, so the image is
exactly the ungrouped stack; the group exists only for undo.

Undo: libkis has no undo-macro API (5.1 or 5.2), and every addChildNode / Krita action is its own
undo command. setChildNodes on a node that is not in the image yet edits the node tree directly
(no undo command), so the whole stack is assembled detached and joins the image with one
addChildNode: ONE undo step. Krita 5.2+ creates the mask from Python. Krita 5.1 cannot (its only
route is the "add transparency mask" action on a layer in the image), so there the masked sky layer is
made in the image, copied, and its two commands undone before the group is added (the group's command
then drops them from the redo stack). A hidden scratch document would avoid that, but on 5.1 it needs
a temporary view for the action, and closing it crashed Krita 5.1.
"""

from __future__ import annotations

from collections.abc import Sequence

from krita import Document, Krita, Node, Selection

from .pixels import GROUP_LAYER, LIGHTING_LAYER, MASK_NAME, SKY_LAYER, gray_layer_bytes


def _selection(matte: bytes, width: int, height: int) -> Selection:
    selection = Selection()
    selection.setPixelData(matte, 0, 0, width, height)
    return selection


def _paint_layer(doc: Document, name: str, pixels: bytes, width: int, height: int) -> Node:
    node = doc.createNode(name, "paintlayer")
    node.setPixelData(pixels, 0, 0, width, height)  # before it joins the image: no undo entry of its own
    return node


def has_mask_api(doc: Document) -> bool:
    """Krita 5.2+ creates transparency masks from Python; 5.1 needs its menu action."""
    return hasattr(doc, "createTransparencyMask")


def _detached_mask(doc: Document, matte: bytes, width: int, height: int) -> Node:
    """5.2+: a transparency mask MASK_NAME holding the matte, not yet in any layer."""
    mask = doc.createTransparencyMask(MASK_NAME)
    mask.setSelection(_selection(matte, width, height))
    return mask


def _add_mask_by_action(doc: Document, layer: Node, matte: bytes, width: int, height: int) -> None:
    """5.1: a transparency mask MASK_NAME under ``layer`` (already in the image) holding the matte.

    Krita 5.1 has no Python API for transparency masks (createNode(..., "transparencymask") gives a
    mask without a selection that breaks saving): its "add transparency mask" action fills the new mask
    from the document selection, which is set to the matte and then put back as it was.
    """
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


def _masked_copy_by_action(doc: Document, parent: Node, above: Node, layer: Node, matte: bytes,
                           width: int, height: int) -> Node:
    """5.1: a detached copy of ``layer`` carrying the mask MASK_NAME, leaving no trace in undo history.

    The mask can only come from Krita's action on a layer in the image, so ``layer`` is added and
    masked (2 undo commands), copied with its mask, and both commands are undone again; the next
    command (adding the group) drops them from the redo stack, so the user sees one undo step.
    """
    if Krita.instance().activeDocument() != doc:  # the mask and undo actions work on the active view
        raise RuntimeError("show the image in the active view and run Replace Sky again")
    parent.addChildNode(layer, above)
    doc.waitForDone()
    _add_mask_by_action(doc, layer, matte, width, height)
    copy = layer.duplicate()
    previous = doc.selection()
    for _ in range(2):
        Krita.instance().action("edit_undo").trigger()
        doc.waitForDone()
    if any(child == layer for child in parent.childNodes()):
        raise RuntimeError("Krita did not undo the temporary sky layer")
    doc.setSelection(previous)  # undoing the mask action brings back the selection it consumed
    doc.waitForDone()
    return copy


def add_replace_result(doc: Document, above: Node, matte: bytes, sky: bytes, lighting: bytes,
                       overlays: Sequence[tuple[str, bytes]] = ()) -> Node:
    """Adds the pass-through group GROUP_LAYER above ``above``: SKY_LAYER (masked by MASK_NAME) with
    LIGHTING_LAYER on top, then the ``overlays`` (name, pixels: the reflection, the horizon haze) when
    the core made them, as one undo step. ``above`` and its pixels are not touched; returns the group.
    """
    width, height = doc.width(), doc.height()
    parent = _parent_of(doc, above)
    sky_layer = _paint_layer(doc, SKY_LAYER, sky, width, height)
    if has_mask_api(doc):
        sky_layer.setChildNodes([_detached_mask(doc, matte, width, height)])  # detached: no undo command
    else:
        sky_layer = _masked_copy_by_action(doc, parent, above, sky_layer, matte, width, height)
    lighting_layer = _paint_layer(doc, LIGHTING_LAYER, lighting, width, height)
    group = doc.createGroupLayer(GROUP_LAYER)
    group.setPassThroughMode(True)
    on_top = [_paint_layer(doc, name, pixels, width, height) for name, pixels in overlays]
    group.setChildNodes([sky_layer, lighting_layer, *on_top])  # bottom to top; detached, so no undo command
    parent.addChildNode(group, above)  # the one undo command for all of it
    doc.waitForDone()
    doc.refreshProjection()
    return group


def add_mask_result(doc: Document, above: Node, matte: bytes) -> Node:
    """Adds a grayscale paint layer MASK_NAME (white = sky) above ``above`` and selects the sky."""
    width, height = doc.width(), doc.height()
    layer = _paint_layer(doc, MASK_NAME, gray_layer_bytes(matte, doc.colorDepth()), width, height)
    _parent_of(doc, above).addChildNode(layer, above)
    doc.waitForDone()
    doc.setSelection(_selection(matte, width, height))
    doc.waitForDone()
    doc.refreshProjection()
    return layer


def _parent_of(doc: Document, node: Node) -> Node:
    parent: Node | None = node.parentNode()
    return parent if parent is not None else doc.rootNode()
