#!/usr/bin/env bash
# Inside the chroot, under xvfb-run: start the GIMP GUI with e2e_driver.py (case "gui"), press OK
# in the plug-in's dialog, then Ctrl+Z and Ctrl+Y in the image window when the driver asks.
# Why xdotool and marker files: the dialog blocks the driver, so a second process must act as the
# user; the markers order the key presses against the driver's checks. Exit status = GIMP's.
# Usage: gui_session.sh DRIVER OUT_FOLDER
set -uo pipefail
DRIVER="$1"
MARKERS="$2/gui"
mkdir -p "$MARKERS"
rm -f "$MARKERS"/ready-for-* "$MARKERS"/*-done

gimp-3.0 --no-splash --batch-interpreter python-fu-eval -b "exec(open('$DRIVER').read())" --quit &
GIMP_PID=$!

wait_window() {  # wait_window NAME -> window id on stdout
    for _ in $(seq 1 600); do
        id=$(xdotool search --onlyvisible --name "$1" 2>/dev/null | head -1)
        if [ -n "$id" ]; then echo "$id"; return 0; fi
        kill -0 "$GIMP_PID" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
wait_file() {
    for _ in $(seq 1 600); do
        [ -e "$1" ] && return 0
        kill -0 "$GIMP_PID" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
press() {  # press WINDOW KEY: focus without a window manager, then a real (XTEST) key press
    xdotool windowfocus --sync "$1" && sleep 0.5 && xdotool key "$2"
}

if dialog=$(wait_window "^Replace Sky$"); then
    sleep 1  # let the dialog finish mapping its widgets
    press "$dialog" Return  # OK is the dialog's default button
    echo "gui_session: pressed OK in the dialog" >&2
    # The image window's title ends in "GIMP" (or is GIMP's full name while it has no image).
    if wait_file "$MARKERS/ready-for-undo" && image=$(wait_window "(GIMP|GNU Image Manipulation Program)$"); then
        press "$image" ctrl+z && touch "$MARKERS/undo-done"
        wait_file "$MARKERS/ready-for-redo" && press "$image" ctrl+y && touch "$MARKERS/redo-done"
    else
        echo "gui_session: no image window; visible windows:" >&2
        for id in $(xdotool search --onlyvisible --name . 2>/dev/null); do xdotool getwindowname "$id" >&2; done
    fi
else
    echo "gui_session: the Replace Sky dialog never appeared" >&2
fi
for _ in $(seq 1 300); do kill -0 "$GIMP_PID" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$GIMP_PID" 2>/dev/null; then
    echo "gui_session: GIMP did not quit; killing it" >&2
    kill "$GIMP_PID"; sleep 2; kill -9 "$GIMP_PID" 2>/dev/null
fi
wait "$GIMP_PID"
