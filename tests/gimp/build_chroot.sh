#!/usr/bin/env bash
# Build (or reuse) a cached Debian 13 "trixie" chroot with GIMP 3 for the end-to-end test.
# Why: Debian 12 only ships GIMP 2.10; GIMP 3's Python plug-ins need trixie. The build takes
# minutes, so the finished tree is cached outside the repository, keyed by CHROOT_VERSION, and
# reused when its completion marker exists. Prints the chroot path on the last stdout line.
# Usage: tests/gimp/build_chroot.sh [gimp|krita]  (needs root; installs debootstrap when missing)
#        gimp (default): GIMP 3.0. krita: Krita 5.2 (Debian 12 has 5.1), for tests/test_krita52_e2e.py;
#        it has its own cache folder, so neither build ever deletes the other.
# Env:   CLNSOD_GIMP_CHROOT_CACHE  cache folder (default /var/cache/clnsod-gimp-chroot)
#        CLNSOD_KRITA_CHROOT_CACHE cache folder of the krita target (default /var/cache/clnsod-krita-chroot)
set -euo pipefail

CHROOT_VERSION="trixie-gimp3-v2"
# xvfb, xauth, xdotool: the GUI test (dialog + undo) runs GIMP under a virtual display.
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 python3-numpy xvfb xauth xdotool"
MIRROR="http://deb.debian.org/debian"
CACHE_DIR="${CLNSOD_GIMP_CHROOT_CACHE:-/var/cache/clnsod-gimp-chroot}"
CHECK="gimp-console-3.0 --version"
case "${1:-gimp}" in
    gimp) ;;
    krita)
        CHROOT_VERSION="trixie-krita52-v1"
        # python3-pyqt5 and xauth are only Recommends of krita / xvfb: name them.
        PACKAGES="krita python3-pyqt5 xvfb xauth"
        CACHE_DIR="${CLNSOD_KRITA_CHROOT_CACHE:-/var/cache/clnsod-krita-chroot}"
        CHECK="dpkg-query -W krita"
        ;;
    *) echo "build_chroot.sh: unknown target $1 (gimp or krita)" >&2; exit 2 ;;
esac
ROOT="$CACHE_DIR/$CHROOT_VERSION"
MARKER="$ROOT/.clnsod-chroot-complete"

if [ -f "$MARKER" ]; then
    echo "$ROOT"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "build_chroot.sh: needs root (debootstrap, chroot, mount)" >&2
    exit 2
fi

mkdir -p "$CACHE_DIR"
# One builder at a time; a second caller waits and then reuses the result.
exec 9>"$CACHE_DIR/.lock"
flock 9
if [ -f "$MARKER" ]; then
    echo "$ROOT"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

WORK="$ROOT.partial"
cleanup() {
    # Unmount whatever this script mounted, even after a failure.
    for m in "$WORK/proc" "$WORK/dev"; do
        if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
    done
}
trap cleanup EXIT

# A leftover partial tree (interrupted build) is rebuilt from scratch.
if [ -d "$WORK" ]; then
    cleanup
    rm -rf --one-file-system "$WORK"
fi

echo "build_chroot.sh: debootstrap trixie into $WORK" >&2
debootstrap --variant=minbase trixie "$WORK" "$MIRROR" >&2
mount -t proc proc "$WORK/proc"
mount --bind /dev "$WORK/dev"
cp /etc/resolv.conf "$WORK/etc/resolv.conf"
chroot "$WORK" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
chroot "$WORK" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $PACKAGES >&2
chroot "$WORK" /usr/bin/env apt-get clean >&2
chroot "$WORK" $CHECK >&2
cleanup
echo "$CHROOT_VERSION" > "$WORK/.clnsod-chroot-complete"
mv "$WORK" "$ROOT"
# Older versions are dead weight (~800 MB each). Bind mounts made by tests live in private mount
# namespaces, so here these are plain folders; --one-file-system guards against anything else.
for old in "$CACHE_DIR"/*/; do
    if [ "${old%/}" != "$ROOT" ]; then rm -rf --one-file-system "${old%/}"; fi
done
echo "$ROOT"
