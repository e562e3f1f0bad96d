#!/usr/bin/env bash
# Berth's main job on a fresh machine: install Berth, make sure a Docker engine
# answers (installing Debian's docker.io as root when none does), build the
# session image locally, then run one real session end to end with `berth demo`.
# Arguments go to `berth`, e.g. `bash scripts/demo.sh --runner builtin`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install --quiet -e .
bash scripts/docker-up.sh
bash scripts/build-base-image.sh
bash scripts/build-image.sh
exec berth "$@" demo
