"""Save a rectangle of the X screen as PNG (inside the GIMP chroot, which has GTK but no screenshot
tool): python3 screenshot.py OUT.png X Y WIDTH HEIGHT."""

import sys

import gi

gi.require_version("Gdk", "3.0")
from gi.repository import Gdk

x, y, width, height = (int(value) for value in sys.argv[2:6])
picture = Gdk.pixbuf_get_from_window(Gdk.get_default_root_window(), x, y, width, height)
if picture is None:
    raise SystemExit("screenshot.py: could not read the screen")
picture.savev(sys.argv[1], "png", [], [])
