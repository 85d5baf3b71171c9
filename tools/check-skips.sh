#!/usr/bin/env bash
# Usage: tools/check-skips.sh LIST PASS=LOG [PASS=LOG...]
# Compares the skipped tests in ctest logs (the output of `ctest`, one log per
# pass, e.g. plain=build/ctest-output.log) with LIST, the expected skips
# (tools/expected-skips.txt: "<test name or bash glob>  # <reason>" a line).
# Each of these is a problem, reported on its own line and counted as failed:
#   - a test that skipped and matches no line of LIST;
#   - a test that matches a line of LIST and ran without skipping;
#   - a line of LIST that matches no test in any log (except lines for
#     api/<backend>/ tests when no log holds a test of that backend);
#   - a line of LIST without a reason.
# Counts: ctest counts a skip as passed; here passed, failed and skipped are
# apart (an unexpected skip moves to failed, a listed test that passed too).
# A log without ctest's "N% tests passed" line is counted from its test lines.
# The last line is "skips: N passed, N failed, N skipped" (every pass); the
# exit status is 1 when there was a problem, else 0.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 LIST PASS=LOG [PASS=LOG...]" >&2
  exit 2
fi
LIST=$1
shift

# --- The list --------------------------------------------------------------------
PATTERNS=()   # test name or glob
LINE_NOS=()   # its line in LIST
PROBLEMS=0
EXTRA_FAILED=0
line_no=0
while IFS= read -r raw || [[ -n ${raw} ]]; do
  line_no=$((line_no + 1))
  entry=${raw%%#*}
  entry=${entry//[$'\t\r ']/}
  [[ -z ${entry} ]] && continue
  reason=""
  if [[ ${raw} == *"#"* ]]; then
    reason=${raw#*#}
    reason=${reason//[$'\t\r ']/}
  fi
  if [[ -z ${reason} ]]; then
    echo "skips: ${LIST}:${line_no}: '${entry}' gives no reason (<test>  # <reason>)"
    PROBLEMS=$((PROBLEMS + 1))
    EXTRA_FAILED=$((EXTRA_FAILED + 1))
  fi
  PATTERNS+=("${entry}")
  LINE_NOS+=("${line_no}")
done <"${LIST}"

declare -A ENTRY_USED=() # index in PATTERNS -> 1 when it matched a test
declare -A BACKEND_SEEN=() # api/<backend>/ -> 1 when a log holds such a test

# The index of the first entry matching $1, or -1.
match_entry() {
  local i
  for i in "${!PATTERNS[@]}"; do
    # shellcheck disable=SC2053 # a glob on purpose
    if [[ $1 == ${PATTERNS[i]} ]]; then
      echo "${i}"
      return
    fi
  done
  echo -1
}

# --- Each pass -------------------------------------------------------------------
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
result_re='^ *[0-9]+/[0-9]+ +Test +#[0-9]+: ([^ ]+) [ .]*(.*[^ ]) +[0-9.]+ sec$'
summary_re='^[0-9]+% tests passed, ([0-9]+) tests? failed out of ([0-9]+)'
for arg in "$@"; do
  pass=${arg%%=*}
  log=${arg#*=}
  if [[ ! -r ${log} ]]; then
    echo "skips: ${pass}: no ctest log ${log}"
    PROBLEMS=$((PROBLEMS + 1))
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
    continue
  fi
  ran=0 ran_passed=0 skipped=0 unexpected=0 listed_ran=0 total="" failed=""
  while IFS= read -r text; do
    if [[ ${text} =~ ${summary_re} ]]; then
      failed=${BASH_REMATCH[1]}
      total=${BASH_REMATCH[2]}
      continue
    fi
    [[ ${text} =~ ${result_re} ]] || continue
    name=${BASH_REMATCH[1]}
    status=${BASH_REMATCH[2]}
    ran=$((ran + 1))
    if [[ ${name} =~ ^(api/[^/]+/) ]]; then
      BACKEND_SEEN[${BASH_REMATCH[1]}]=1
    fi
    entry=$(match_entry "${name}")
    if [[ ${entry} -ge 0 ]]; then
      ENTRY_USED[${entry}]=1
    fi
    if [[ ${status} == "***Skipped" ]]; then
      skipped=$((skipped + 1))
      if [[ ${entry} -lt 0 ]]; then
        echo "skips: ${pass}: ${name} skipped but is not an expected skip (${LIST})"
        unexpected=$((unexpected + 1))
      fi
    else
      if [[ ${status} == "Passed" ]]; then
        ran_passed=$((ran_passed + 1))
      fi
      if [[ ${entry} -ge 0 ]]; then
        echo "skips: ${pass}: ${name} is an expected skip (${LIST}:${LINE_NOS[entry]}) but did not skip: ${status}"
        # A failed test is already counted as failed.
        if [[ ${status} == "Passed" ]]; then
          listed_ran=$((listed_ran + 1))
        fi
        PROBLEMS=$((PROBLEMS + 1))
      fi
    fi
  done <"${log}"
  PROBLEMS=$((PROBLEMS + unexpected))
  if [[ -z ${total} ]]; then
    total=${ran}
    failed=$((ran - ran_passed - skipped))
  fi
  p=$((total - failed - skipped - listed_ran))
  f=$((failed + unexpected + listed_ran))
  s=$((skipped - unexpected))
  echo "skips: ${pass}: ${p} passed, ${f} failed, ${s} skipped"
  TOTAL_PASSED=$((TOTAL_PASSED + p))
  TOTAL_FAILED=$((TOTAL_FAILED + f))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + s))
done

# --- Lines of the list that matched nothing --------------------------------------
for i in "${!PATTERNS[@]}"; do
  [[ -n ${ENTRY_USED[${i}]:-} ]] && continue
  if [[ ${PATTERNS[i]} =~ ^(api/[^/*?[]+/) ]] && [[ -z ${BACKEND_SEEN[${BASH_REMATCH[1]}]:-} ]]; then
    continue # that backend was not tested in this run
  fi
  echo "skips: ${LIST}:${LINE_NOS[i]}: '${PATTERNS[i]}' is an expected skip but matches no test of any pass"
  PROBLEMS=$((PROBLEMS + 1))
  EXTRA_FAILED=$((EXTRA_FAILED + 1))
done

TOTAL_FAILED=$((TOTAL_FAILED + EXTRA_FAILED))
echo "skips: ${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed, ${TOTAL_SKIPPED} skipped"
if [[ ${PROBLEMS} -gt 0 ]]; then
  exit 1
fi
