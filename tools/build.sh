#!/usr/bin/env bash
# Usage: tools/build.sh [build-dir] [extra cmake args...]
# Installs missing dependencies, configures with Ninja (RelWithDebInfo unless
# the extra args say otherwise) and builds with 2 jobs.
#   build-dir  default: <repo>/build; a relative path is taken from the current directory
# Environment:
#   QUIRE_JOBS           parallel jobs (default 2)
#   QUIRE_BUILD_TARGETS  space-separated targets to build (default: all)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BUILD_DIR=${1:-${ROOT}/build}
if [[ $# -gt 0 ]]; then
  shift
fi
case ${BUILD_DIR} in
  /*) ;;
  *) BUILD_DIR=${PWD}/${BUILD_DIR} ;;
esac

"${ROOT}/tools/install-deps.sh"

# A build folder configured with another generator cannot be reused with Ninja.
CACHE=${BUILD_DIR}/CMakeCache.txt
if [[ -f ${CACHE} ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "${CACHE}"; then
  echo "build: ${BUILD_DIR} was configured with another generator; reconfiguring" >&2
  rm -rf "${CACHE}" "${BUILD_DIR}/CMakeFiles"
fi

cmake -S "${ROOT}" -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"

targets=()
if [[ -n ${QUIRE_BUILD_TARGETS:-} ]]; then
  read -r -a names <<<"${QUIRE_BUILD_TARGETS}"
  targets=(--target "${names[@]}")
fi
cmake --build "${BUILD_DIR}" -j "${QUIRE_JOBS:-2}" "${targets[@]}"
