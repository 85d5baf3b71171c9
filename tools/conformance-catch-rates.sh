#!/usr/bin/env bash
# Usage: tools/conformance-catch-rates.sh [build-dir] [runs] [fault=TESTS ...]
# Runs the conformance suite against faults of conformance_tests/broken_store.h
# again and again and prints, per fault and test, in how many runs the test
# failed: how reliably the suite catches a fault whose detection depends on
# threads meeting (docs/backend-authors.md, "The suite checks itself").
#   build-dir    default: <repo>/build (quire_conformance_broken must be built)
#   runs         default: 20
#   fault=TESTS  a fault (its FaultName) and a gtest filter of the tests that
#                must catch it, e.g. OutOfCommitOrder='P02_ConcurrentWriters*:P03_*';
#                default: the faults that only threads or processes meeting reveal,
#                and the control None, whose tests must never fail.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-${ROOT}/build}
RUNS=${2:-20}
shift $(($# < 2 ? $# : 2))
BROKEN=${BUILD_DIR}/conformance_tests/quire_conformance_broken
[[ -x ${BROKEN} ]] || {
  echo "catch-rates: ${BROKEN} is not built" >&2
  exit 1
}

cases=("$@")
if [[ ${#cases[@]} -eq 0 ]]; then
  cases=(
    "OutOfCommitOrder=P02_ConcurrentWritersNeverSkipEvents:P03_*"
    "BrieflyOutOfCommitOrder=P02_ConcurrentWritersNeverSkipEvents:P03_*"
    "ProcessLocalCommitLock=P02_ConcurrentProcessesNeverSkipEvents"
    "NonAtomicUniqueness=P06_*"
    "ReadsBlockWriters=P11_*"
    "GenerationOfThisProcessOnly=P02_ConcurrentProcessesNeverSkipEvents"
    "WaitMissesEarlierCommit=P12_*"
    "None=P02_*:P03_*:P06_*:P09_*:P11_*:P12_*"
  )
fi

log=$(mktemp)
trap 'rm -f "${log}"' EXIT
for case in "${cases[@]}"; do
  fault=${case%%=*}
  IFS=: read -r -a tests <<<"${case#*=}"
  filter=""
  for t in "${tests[@]}"; do filter+="*StoreConformance.${t}/${fault}:"; done
  declare -A failed=()
  names=()
  SECONDS=0
  for ((run = 1; run <= RUNS; run++)); do
    "${BROKEN}" --gtest_filter="${filter%:}" >"${log}" 2>&1 || true
    while read -r name; do
      [[ -v failed[${name}] ]] || {
        failed[${name}]=0
        names+=("${name}")
      }
      if grep -q "^\[  FAILED  \] Broken/StoreConformance\.${name}/${fault}" "${log}"; then
        failed[${name}]=$((failed[${name}] + 1))
      fi
    done < <(sed -n "s|^\[ RUN      \] Broken/StoreConformance\.\([A-Za-z0-9_]*\)/${fault}\$|\1|p" "${log}")
  done
  for name in "${names[@]}"; do
    echo "${fault} ${name}: failed in ${failed[${name}]} of ${RUNS} runs"
  done
  echo "${fault}: ${RUNS} runs in ${SECONDS} s"
  unset failed
done
