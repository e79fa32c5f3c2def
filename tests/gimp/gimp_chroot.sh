#!/usr/bin/env bash
# Run one command inside the GIMP 3 chroot with host folders bind-mounted at their own paths.
# Why: the plug-in's core.json records the host venv's Python (e.g. /work/main/.venv/bin/python,
# a symlink into a pyenv prefix); binding the repository, the venv and the real Python prefix at
# the same absolute paths makes that path valid inside the chroot unchanged. Everything runs in a
# private mount namespace (unshare -m), so the kernel drops every mount when the last process in it
# exits: nothing leaks into the host, even after a crash, a timeout or a kill.
# Usage: gimp_chroot.sh ROOT [--ro DIR]... [--rw DIR]... -- COMMAND [ARG]...
set -euo pipefail

if [ "${_CLNSOD_IN_NAMESPACE:-}" != 1 ]; then
    export _CLNSOD_IN_NAMESPACE=1
    exec unshare --mount --propagation private "$0" "$@"
fi

ROOT="$1"
shift
bind() {  # bind SRC (folder or file) at the same path under ROOT; $2 = ro|rw
    local src dst
    src="$(realpath "$1")"
    dst="$ROOT$src"
    if [ -d "$src" ]; then
        mkdir -p "$dst"
    else
        mkdir -p "$(dirname "$dst")"
        [ -e "$dst" ] || touch "$dst"
    fi
    mount --bind "$src" "$dst"
    if [ "$2" = ro ]; then mount -o remount,bind,ro "$dst"; fi
}
while [ $# -gt 0 ]; do
    case "$1" in
        --ro) bind "$2" ro; shift 2 ;;
        --rw) bind "$2" rw; shift 2 ;;
        --) shift; break ;;
        *) echo "gimp_chroot.sh: unexpected argument $1" >&2; exit 2 ;;
    esac
done
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
exec chroot "$ROOT" "$@"
