#!/usr/bin/env bash
# The one command that runs Berth's benchmarks and writes the results table.
#
#   bash scripts/bench.sh                      the full suite (~7 min): bench-results/ and BENCHMARKS.md
#   bash scripts/bench.sh --quick              fewer repeats (~3 min); BENCHMARKS.md untouched
#   bash scripts/bench.sh --only turn,relay    a subset of: cold,warm,turn,relay,idle,concurrent,sessions,claude
#   bash scripts/bench.sh --skip idle --no-profile
#
# Like scripts/test.sh it first makes sure Berth is installed, a Docker engine
# answers and the session image is up to date (each step skips itself when it
# has nothing to do; the Docker steps only when a container benchmark is
# selected), and installs py-spy for the server profiles unless --no-profile.
# Everything else is `python3 -m scripts.bench` (see scripts/bench/__main__.py;
# --help lists every flag). Every container and process a benchmark starts is
# removed at the end, also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}

say() { printf 'bench: %s\n' "$*" >&2; }

if ! "$PY" -c "import actors, transport, agent, websocket, simple_websocket, msgspec, docker" 2>/dev/null; then
    say "installing Berth (pip install -e .)"
    "$PY" -m pip install --quiet -e .
fi

profile=1
for arg in "$@"; do
    [[ $arg == --no-profile ]] && profile=0
done
if ((profile)) && ! command -v py-spy >/dev/null 2>&1; then
    say "installing py-spy for the server profiles"
    "$PY" -m pip install --quiet py-spy || say "py-spy could not be installed; profiles will be skipped"
fi

needs_docker=$("$PY" -m scripts.bench --needs-docker "$@")
if [[ $needs_docker == yes ]]; then
    bash scripts/docker-up.sh
    bash scripts/build-image.sh
    # The Claude Code benchmark's image (skips itself when up to date).
    BERTH_IMAGE=berth-session-sdk:latest BERTH_IMAGE_EXTRAS=sdk bash scripts/build-image.sh
fi

# 1,000 idle sessions need a few thousand descriptors in the server and the load process.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export BERTH_BENCH_COMMAND="bash scripts/bench.sh${*:+ $*}"
exec "$PY" -m scripts.bench "$@"
