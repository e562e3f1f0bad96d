#!/usr/bin/env bash
# Build the local base image berth-base:bookworm without any container
# registry: debootstrap a minimal Debian bookworm (python3 3.11, pip,
# ca-certificates, git) from the Debian mirror apt uses on this machine,
# trim it, and `docker import` it.
#
# Skips at once if the image already exists (BERTH_REBUILD_BASE=1 forces).
#
# Environment:
#   BERTH_BASE_IMAGE      image name          (default berth-base:bookworm)
#   BERTH_DEBIAN_MIRROR   Debian mirror URL   (default: the one in apt's sources)
#   BERTH_REBUILD_BASE=1  rebuild even if the image exists
set -euo pipefail

IMAGE=${BERTH_BASE_IMAGE:-berth-base:bookworm}
SUITE=bookworm
PACKAGES=python3,python3-pip,ca-certificates,git

say() { printf 'build-base-image: %s\n' "$*" >&2; }

if [[ ${BERTH_REBUILD_BASE:-0} != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE exists; skipping (BERTH_REBUILD_BASE=1 to rebuild)"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    say "debootstrap needs root"
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The Debian archive URI apt uses for the main suite (not -security/-updates),
# from deb822 .sources files or one-line .list files.
find_mirror() {
    local f
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        awk '
            function flush() {
                if (is_deb && enabled && main_suite && uri != "") { print uri; found = 1; exit }
                is_deb = 0; enabled = 1; main_suite = 0; uri = ""
            }
            BEGIN { enabled = 1 }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"   { for (i = 2; i <= NF; i++) if ($i == "deb") is_deb = 1 }
            tolower($1) == "enabled:" { if (tolower($2) == "no") enabled = 0 }
            tolower($1) == "uris:"    { uri = $2 }
            tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) if ($i !~ /-/) main_suite = 1 }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]-]+)[[:space:]].*/\2/p' "$f"
    done
}

MIRROR=${BERTH_DEBIAN_MIRROR:-}
if [[ -z $MIRROR ]]; then
    while read -r uri; do
        case $uri in
            *security*) continue ;;
            *debian*) MIRROR=$uri; break ;;
        esac
    done < <(find_mirror)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}

WORK=$(mktemp -d /var/tmp/berth-rootfs.XXXXXX)
ROOTFS=$WORK/rootfs

cleanup() {
    # debootstrap mounts proc/sys inside the target; an interrupted run can
    # leave them there. Unmount anything below $WORK before deleting it.
    local m
    if [[ -d $WORK ]]; then
        while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT

t0=$SECONDS
say "debootstrap --variant=minbase $SUITE from $MIRROR (packages: $PACKAGES)"
if ! debootstrap --variant=minbase --components=main --include="$PACKAGES" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    say "debootstrap failed; last lines of its log:"
    tail -n 30 "$WORK/debootstrap.log" >&2
    if [[ -f $ROOTFS/debootstrap/debootstrap.log ]]; then
        tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    fi
    exit 1
fi
t_debootstrap=$((SECONDS - t0))

# Trim: package caches and lists, docs, man pages, locales, logs.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/usr/share/doc/* \
    "$ROOTFS"/usr/share/man/* \
    "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* \
    "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/var/lib/dpkg/*-old \
    "$ROOTFS"/tmp/* \
    "$ROOTFS"/var/tmp/*
find "$ROOTFS/var/log" -type f -delete
# Keep later `apt-get install`s in derived images small too.
mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d" "$ROOTFS/etc/apt/apt.conf.d"
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/berth-excludes" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/berth-no-cache" <<'EOF'
APT::Install-Recommends "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };
EOF
# Full set of suites for later apt use inside derived images.
sec_mirror=${MIRROR%/debian}/debian-security
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $sec_mirror $SUITE-security main
EOF
# The host's resolver/hostname must not be baked in: Docker provides them.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"

t1=$SECONDS
say "importing into Docker as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "berth base: debootstrap --variant=minbase $SUITE + $PACKAGES" \
        - "$IMAGE" >/dev/null
t_import=$((SECONDS - t1))

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
pyver=$(docker run --rm --network=host "$IMAGE" python3 --version 2>&1 || true)
say "built $IMAGE: $((size / 1024 / 1024)) MiB, $pyver; debootstrap ${t_debootstrap}s, import ${t_import}s"
