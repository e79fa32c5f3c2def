#!/usr/bin/env bash
# Inside the chroot, under xvfb-run: start the GIMP GUI with e2e_driver.py (case "gui") and act as the
# user, with the keyboard only: in the Replace Sky dialog wait for the first live preview, raise the
# relight slider (its Alt+mnemonic, Up x3), pick the next sky in the gallery (Alt+Y, Right,
# Space), pick the saved look (Alt+K, Down), each time waiting for the next
# preview and taking a screenshot, press OK (Alt+O); then Ctrl+Z and Ctrl+Y in the image window when
# the driver asks; then, in a second Replace Sky, wait for its first preview and press Escape.
# Why xdotool, marker files and the log: the dialog blocks the driver, so a second process must act as
# the user; the markers order the key presses against the driver's checks, and the plug-in's
# "clnsod: preview N shown" lines on GIMP's console say when a preview is on screen. Exit status = GIMP's.
# Usage: gui_session.sh DRIVER OUT_FOLDER
set -uo pipefail
DRIVER="$1"
MARKERS="$2/gui"
mkdir -p "$MARKERS"
rm -f "$MARKERS"/ready-for-* "$MARKERS"/*-done

SHOT="$(dirname "$DRIVER")/screenshot.py"
LOG="$MARKERS/gimp-console.log"
gimp-3.0 --no-splash --batch-interpreter python-fu-eval -b "exec(open('$DRIVER').read())" --quit >"$LOG" 2>&1 &
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
press() {  # press WINDOW KEY...: focus without a window manager, then real (XTEST) key presses
    local window="$1"
    shift
    xdotool windowfocus --sync "$window" && sleep 0.5 && xdotool key --delay 150 "$@"
}
previews() { grep -c 'clnsod: preview .* shown' "$LOG"; }
settled() {  # settled N: at least N previews shown in this GIMP session, then none for 1.5 s; prints the count
    local last now
    for _ in $(seq 1 600); do
        [ "$(previews)" -ge "$1" ] && break
        kill -0 "$GIMP_PID" 2>/dev/null || return 1
        sleep 0.2
    done
    [ "$(previews)" -ge "$1" ] || return 1
    last=$(previews)
    for _ in $(seq 1 40); do
        sleep 1.5
        now=$(previews)
        if [ "$now" = "$last" ]; then echo "$now"; return 0; fi
        last=$now
    done
    return 1
}
shot() {  # shot WINDOW NAME: a PNG of the window's rectangle of the screen
    eval "$(xdotool getwindowgeometry --shell "$1")"
    python3 "$SHOT" "$MARKERS/$2.png" "$X" "$Y" "$WIDTH" "$HEIGHT" || echo "gui_session: screenshot $2 failed" >&2
}

if dialog=$(wait_window "^Replace Sky$") && shown=$(settled 1); then
    shot "$dialog" dialog-1
    press "$dialog" "alt+$CLNSOD_E2E_RELIGHT_KEY" Up Up Up  # Foreground relight (by its mnemonic), three steps up
    shown=$(settled $((shown + 1))) && shot "$dialog" dialog-2
    press "$dialog" alt+y Right space  # the sky gallery: the next sky
    shown=$(settled $((shown + 1))) && shot "$dialog" dialog-gallery
    press "$dialog" alt+k Down  # the looks list: the saved look
    shown=$(settled $((shown + 1))) && shot "$dialog" dialog-3
    press "$dialog" alt+o  # OK
    echo "gui_session: pressed OK in the dialog" >&2
    # The image window's title ends in "GIMP" (or is GIMP's full name while it has no image).
    if wait_file "$MARKERS/ready-for-undo" && image=$(wait_window "(GIMP|GNU Image Manipulation Program)$"); then
        press "$image" ctrl+z && touch "$MARKERS/undo-done"
        wait_file "$MARKERS/ready-for-redo" && press "$image" ctrl+y && touch "$MARKERS/redo-done"
        if again=$(wait_window "^Replace Sky$") && settled $((shown + 1)) >/dev/null; then  # the second Replace Sky
            shot "$again" dialog-again
            press "$again" Escape
            echo "gui_session: pressed Escape in the second dialog" >&2
        fi
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
STATUS=$?
cat "$LOG" >&2
exit $STATUS
