#!/usr/bin/env bash
# The one command that sets up and runs Berth's whole test suite on a fresh
# machine: install the package with its test extras, bring up a Docker engine,
# build the base and session images (each step skips itself when it has
# nothing to do), then run ruff, mypy and pytest.
#
# ruff, mypy and pytest all run even if an earlier one fails; the exit status
# is non-zero if any of them (or any setup step) failed.
# Arguments are passed to pytest, e.g. `bash scripts/test.sh -k session -x`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)
timings=()

# setup NAME CMD...: run a setup step; stop everything if it fails.
setup() {
    local name=$1 t0 rc=0
    shift
    printf '\n=== %s\n' "$name"
    t0=$(now)
    "$@" || rc=$?
    timings+=("$(printf '%-16s %6ss  %s' "$name" "$(since "$t0")" "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
    if ((rc != 0)); then
        printf '\n=== setup step "%s" failed (exit %s); not running the checks\n' "$name" "$rc" >&2
        exit "$rc"
    fi
}

failed=()
# check NAME CMD...: run a check; remember a failure and go on.
check() {
    local name=$1 t0 rc=0
    shift
    printf '\n=== %s\n' "$name"
    t0=$(now)
    "$@" || rc=$?
    timings+=("$(printf '%-16s %6ss  %s' "$name" "$(since "$t0")" "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
    if ((rc != 0)); then
        failed+=("$name")
    fi
}

# The real-CLI tests run the Claude CLI in a loopback-only network namespace
# (unshare + ip; nsenter to join a container's).
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v git >/dev/null || need_apt+=(git)
# The web page is tested in Debian's Chromium, driven by Playwright (which downloads no browser).
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
    setup "apt packages" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${need_apt[*]}"
fi
setup "pip install" python3 -m pip install --quiet -e '.[test]'
setup "docker engine" bash scripts/docker-up.sh
setup "base image" bash scripts/build-base-image.sh
setup "session image" bash scripts/build-image.sh
# Claude Code (the SDK runner and its bundled CLI) under its own tag, for the real-CLI container tests.
setup "sdk image" env BERTH_IMAGE=berth-session-sdk:latest BERTH_IMAGE_EXTRAS=sdk bash scripts/build-image.sh

export BERTH_REQUIRE_DOCKER=1

check "ruff" python3 -m ruff check .
check "mypy" python3 -m mypy
# A hard cap, so a hang is reported rather than eating the whole CI budget.
check "pytest" timeout --kill-after=30 "${BERTH_TEST_TIMEOUT:-3000}" python3 -m pytest -q "$@"

printf '\n=== timings\n'
printf '%s\n' "${timings[@]}"
printf '%-16s %6ss\n' "total" "$(since "$t_start")"

if ((${#failed[@]})); then
    printf '\n=== FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\n=== all checks ok\n'
