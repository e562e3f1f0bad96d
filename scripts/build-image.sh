#!/usr/bin/env bash
# Build the session image berth-session:latest from scripts/session-image/.
#
# 1. Hash the inputs (Dockerfile, this script, setup.cfg, pyproject.toml,
#    README.md and the files of the actors/ transport/ agent/ packages, the
#    base image's id). If the image exists with that hash in its
#    `berth.source-hash` label, stop: nothing changed.
# 2. `pip wheel` the repo (Berth and all its dependencies) on the host into
#    scripts/session-image/wheels/, so the image build needs no index.
# 3. `docker build` with the classic builder on the host network (the daemon
#    runs with --bridge=none), two stages so that the wheelhouse stays out of
#    the image; then check that the image's Python starts and imports Berth's
#    packages.
# 4. Remove only what this build made obsolete: its own install stage
#    (labelled with this build's id) and the image this tag pointed at before,
#    if nothing else uses it. Other images on the engine are left alone.
#
# Environment:
#   BERTH_IMAGE            image to build      (default berth-session:latest)
#   BERTH_BASE_IMAGE       base image          (default berth-base:bookworm)
#   BERTH_IMAGE_EXTRAS     Berth extras to install in the image, e.g. "sdk"
#   BERTH_REBUILD_IMAGE=1  build even if the hash matches
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CTX=$REPO/scripts/session-image
IMAGE=${BERTH_IMAGE:-berth-session:latest}
BASE=${BERTH_BASE_IMAGE:-berth-base:bookworm}
EXTRAS=${BERTH_IMAGE_EXTRAS:-}
PACKAGES=(actors transport agent)

if [[ -n $EXTRAS ]]; then
    REQUIREMENT="berth[$EXTRAS]"
else
    REQUIREMENT=berth
fi

say() { printf 'build-image: %s\n' "$*" >&2; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t_all=$(now)
cd "$REPO"
bash "$REPO/scripts/docker-up.sh"

# --- 1. input hash -------------------------------------------------------
t0=$(now)
base_id=$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null || echo "not-local:$BASE")
inputs=(scripts/session-image/Dockerfile scripts/build-image.sh)
for f in setup.cfg pyproject.toml README.md MANIFEST.in; do
    [[ -f $f ]] && inputs+=("$f")
done
existing_pkgs=()
for p in "${PACKAGES[@]}"; do
    [[ -d $p ]] && existing_pkgs+=("$p")
done
hash=$(
    {
        printf 'base=%s\nbase_id=%s\nrequirement=%s\n' "$BASE" "$base_id" "$REQUIREMENT"
        {
            printf '%s\0' "${inputs[@]}"
            if ((${#existing_pkgs[@]})); then
                find "${existing_pkgs[@]}" -type d -name __pycache__ -prune -o \
                    -type f ! -name '*.pyc' -print0
            fi
        } | LC_ALL=C sort -z | xargs -0 -r sha256sum
    } | sha256sum | cut -c1-64
)
old_hash=$(docker image inspect -f '{{index .Config.Labels "berth.source-hash"}}' "$IMAGE" 2>/dev/null || true)
if [[ ${BERTH_REBUILD_IMAGE:-0} != 1 && $old_hash == "$hash" ]]; then
    say "$IMAGE is up to date (source hash ${hash:0:12}); skipping ($(since "$t_all")s)"
    exit 0
fi
old_hash=${old_hash:-none}
say "building $IMAGE (source hash ${hash:0:12}, was ${old_hash:0:12}; hashing $(since "$t0")s)"

# --- 2. wheelhouse ---------------------------------------------------------
t0=$(now)
rm -rf "$CTX/wheels"
mkdir -p "$CTX/wheels"
# Build from a clean copy of exactly the hashed inputs: an in-tree build would
# write build/ and *.egg-info into the repo, and setuptools' build/lib keeps
# files that were deleted from the source, which would then ship in the wheel.
stage=$(mktemp -d /tmp/berth-wheel-src.XXXXXX)
trap 'rm -rf "$stage"' EXIT
for f in setup.cfg pyproject.toml README.md MANIFEST.in; do
    [[ -f $f ]] && cp "$f" "$stage/"
done
if ((${#existing_pkgs[@]})); then
    tar -c --exclude=__pycache__ --exclude='*.pyc' "${existing_pkgs[@]}" | tar -x -C "$stage"
fi
spec=$stage
[[ -n $EXTRAS ]] && spec="$stage[$EXTRAS]"
if ! python3 -m pip wheel --quiet --disable-pip-version-check \
    --wheel-dir "$CTX/wheels" "$spec" >"$stage.log" 2>&1; then
    say "pip wheel failed:"
    tail -n 40 "$stage.log" >&2
    rm -f "$stage.log"
    exit 1
fi
rm -rf "$stage" "$stage.log"
nwheels=$(find "$CTX/wheels" -name '*.whl' | wc -l)
say "wheelhouse: $nwheels wheels in $(since "$t0")s"

# --- 3. image ----------------------------------------------------------------
t0=$(now)
log=$(mktemp /tmp/berth-build-image.XXXXXX.log)
build_id=$(date +%s)-$$-$RANDOM
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
drop_stage() {
    docker image prune --force --filter "label=berth.build-stage=$build_id" >/dev/null 2>&1 || true
}
if ! DOCKER_BUILDKIT=0 docker build --network=host --force-rm \
    --build-arg BASE="$BASE" \
    --build-arg BERTH_REQUIREMENT="$REQUIREMENT" \
    --build-arg BERTH_SOURCE_HASH="$hash" \
    --build-arg BERTH_BUILD_ID="$build_id" \
    --tag "$IMAGE" "$CTX" >"$log" 2>&1; then
    say "docker build failed; last lines of $log:"
    tail -n 40 "$log" >&2
    drop_stage
    exit 1
fi
rm -f "$log"
rm -rf "$CTX/wheels"
t_build=$(since "$t0")
drop_stage
# The image this tag pointed at before is now untagged: drop it unless in use.
new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [[ -n $old_id && $old_id != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi

# Smoke test: Python starts and Berth's packages (those that exist) import.
importable=()
for p in "${existing_pkgs[@]}"; do
    [[ -f $p/__init__.py ]] && importable+=("$p")
done
check="import sys; print(sys.version.split()[0])"
if ((${#importable[@]})); then
    check="$check; import $(IFS=,; echo "${importable[*]}")"
fi
if ! pyver=$(docker run --rm --network=host "$IMAGE" python3 -c "$check" 2>&1); then
    say "the new image fails its smoke test ($check):"
    printf '%s\n' "$pyver" >&2
    exit 1
fi

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE: $((size / 1024 / 1024)) MiB, Python $pyver; imports ok: ${importable[*]:-(no packages yet)}; docker build ${t_build}s, total $(since "$t_all")s"
