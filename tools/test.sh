#!/usr/bin/env bash
# Usage: tools/test.sh
# Installs missing dependencies, builds into build/ and runs every test with
# ctest (unit tests, storage conformance suite and its self-test, API tests on
# each backend, browser tests of the client); installs that build into
# build/install and builds and runs the out-of-tree example backend
# (examples/memory_backend) against it; makes and checks the Debian package of
# that build (tools/package-check.sh); then
# builds and runs the tests again with AddressSanitizer + UBSan in build-asan/
# (all but the conformance self-test, the browser test and the API tests on
# PostgreSQL, see pass 2);
# then builds with ThreadSanitizer in build-tsan/ and runs the unit tests, the
# SQLite and LMDB conformance suites and the API tests on SQLite there.
# Before building it runs `npm ci` in tests/browser (playwright-core for the
# browser tests, which drive /usr/bin/chromium).
# Environment:
#   QUIRE_SKIP_SANITIZE=1    skip the sanitizer pass
#   QUIRE_SKIP_TSAN=1        skip the ThreadSanitizer pass
#   QUIRE_TEST_DATABASES     ;-list of backends for the API tests (default: every
#                            backend this source tree builds, see below)
#   QUIRE_JOBS               parallel build and test jobs (default 2)
# ctest runs with --no-tests=error. A skipped test is not a pass: the skips of
# every pass are compared with tools/expected-skips.txt (tools/check-skips.sh),
# and a skip not listed there, or a listed test that did not skip, fails the
# run with a line "skips: <pass>: <test> ..." naming it.
# The last line is "summary: N passed, N failed, N skipped" (ctest tests of
# every pass: plain, example, sanitizer, tsan; problems with skips count as failed,
# and so does a failed package check).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
JOBS=${QUIRE_JOBS:-2}
SECONDS=0

"${ROOT}/tools/install-deps.sh"

# --- Browser test dependencies ---------------------------------------------------
# playwright-core, exactly as tests/browser/package-lock.json pins it, from the
# npm registry. The browser tests never skip, so an unreachable registry fails here.
echo "test.sh: npm ci in tests/browser"
if ! (cd "${ROOT}/tests/browser" && npm ci --no-audit --no-fund --loglevel=error); then
  echo "test.sh: FAILED: npm ci in tests/browser (is the npm registry reachable?); the browser tests need playwright-core" >&2
  exit 1
fi

# --- Backends the API tests run against -------------------------------------
# sqlite is always built. A further backend counts as declared once its folder
# storage/<name>/ has sources and the root CMakeLists.txt builds that folder
# (the way storage/sqlite is built today). QUIRE_TEST_DATABASES overrides this.
backend_declared() {
  compgen -G "${ROOT}/storage/$1/*.cc" >/dev/null && grep -q "storage/$1" "${ROOT}/CMakeLists.txt"
}
if [[ -n ${QUIRE_TEST_DATABASES:-} ]]; then
  IFS=';' read -r -a DATABASES <<<"${QUIRE_TEST_DATABASES}"
else
  DATABASES=(sqlite)
  for b in postgres lmdb; do
    if backend_declared "${b}"; then
      DATABASES+=("${b}")
    fi
  done
fi
DB_LIST=$(IFS=';' && echo "${DATABASES[*]}")

# --- Throwaway PostgreSQL ------------------------------------------------------
# Started only when postgres is among the backends: a fresh cluster under /tmp
# on $QUIRE_PG_PORT (default 55432), stopped and deleted when this script exits.
# The conformance suite and the API tests find it through QUIRE_TEST_POSTGRES_URL.
if [[ ";${DB_LIST};" == *";postgres;"* ]]; then
  trap '"${ROOT}/tools/pg-throwaway.sh" stop >/dev/null 2>&1 || true' EXIT
  QUIRE_TEST_POSTGRES_URL=$("${ROOT}/tools/pg-throwaway.sh" start)
  export QUIRE_TEST_POSTGRES_URL
  echo "test.sh: throwaway PostgreSQL at ${QUIRE_TEST_POSTGRES_URL}"
fi
echo "test.sh: API tests run against: ${DB_LIST}"

TOTAL_FAILED=0  # failures beyond ctest's own counts (a pass that did not run or finish)
FAILED_PASSES=()
PASS_LOGS=()  # NAME=LOG of every ctest run, for tools/check-skips.sh

# run_ctest NAME BUILD_DIR [CTEST_ARGS...]: runs ctest (with any further
# arguments, e.g. -E REGEX) and keeps its log for the counts.
run_ctest() {
  local name=$1 dir=$2 log rc
  shift 2
  log=${dir}/ctest-output.log
  set +e
  ctest --test-dir "${dir}" --output-on-failure --no-tests=error -j "${JOBS}" --timeout 600 "$@" 2>&1 |
    tee "${log}"
  rc=${PIPESTATUS[0]}
  set -e
  PASS_LOGS+=("${name}=${log}")
  if [[ ${rc} -ne 0 ]] && ! grep -qE '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "${log}"; then
    TOTAL_FAILED=$((TOTAL_FAILED + 1))  # ctest stopped before its summary (or found no tests)
  fi
  if [[ ${rc} -ne 0 ]]; then
    FAILED_PASSES+=("${name}")
  fi
  echo "test.sh: ${name} pass finished after ${SECONDS}s (ctest exit ${rc})"
}

# --- Pass 1: RelWithDebInfo ------------------------------------------------------
# -g1 (line tables and function names, no variables) here and in the sanitizer
# build (pass 2): a third less compile time than -g, and stack traces keep
# their lines.
"${ROOT}/tools/build.sh" "${ROOT}/build" -DQUIRE_SANITIZE=OFF "-DQUIRE_TEST_DATABASES=${DB_LIST}" \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
echo "test.sh: build finished after ${SECONDS}s"
run_ctest plain "${ROOT}/build"

# --- The out-of-tree example backend, built against the installed suite --------
# Installs the plain build into build/install, then builds examples/memory_backend
# as its own CMake project with find_package(QuireConformance) and runs it.
EXAMPLE_DIR=${ROOT}/build/example-memory
if cmake --install "${ROOT}/build" --prefix "${ROOT}/build/install" >/dev/null &&
  cmake -S "${ROOT}/examples/memory_backend" -B "${EXAMPLE_DIR}" -G Ninja \
    "-DCMAKE_PREFIX_PATH=${ROOT}/build/install" >/dev/null &&
  cmake --build "${EXAMPLE_DIR}" -j "${JOBS}"; then
  run_ctest example "${EXAMPLE_DIR}"
else
  echo "test.sh: the example backend did not build against the installed suite"
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
  FAILED_PASSES+=(example)
fi

# --- The Debian package of the plain build ------------------------------------
# cpack -G DEB, lintian, the contents, the extracted binary, the man page and
# default file against --help, the unit (tools/package-check.sh). Once, here:
# the other builds make the same package.
if "${ROOT}/tools/package-check.sh" "${ROOT}/build"; then
  echo "test.sh: package check finished after ${SECONDS}s"
else
  echo "test.sh: the Debian package check failed"
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
  FAILED_PASSES+=(package)
fi

# --- Pass 2: AddressSanitizer + UndefinedBehaviorSanitizer -----------------------
# Every test of the plain pass except, by -E (each ran in the plain pass):
#   - the conformance self-test (*SelfTest*): it checks that the suite
#     catches deliberately broken copies of the SQLite store, a property of the
#     suite, not of memory; its tests run alone (RUN_SERIAL) and took ~145 s of
#     this pass. The suite itself runs here against every backend.
#   - browser/client: the same server code as the API tests, driven through
#     Chromium; 64 s here, most of it waiting for the page.
#   - the API tests on PostgreSQL (api/postgres/): the server above the Store
#     interface is the same code on every backend, and the PostgreSQL store
#     runs here under its unit tests and the conformance suite; the API tests
#     on SQLite and LMDB run here (LMDB's values point into its map, the
#     likeliest place for a use after free). They took ~315 s of test time.
if [[ ${QUIRE_SKIP_SANITIZE:-0} == 1 ]]; then
  echo "test.sh: sanitizer pass skipped (QUIRE_SKIP_SANITIZE=1)"
else
  "${ROOT}/tools/build.sh" "${ROOT}/build-asan" -DQUIRE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug "-DQUIRE_TEST_DATABASES=${DB_LIST}" \
    -DCMAKE_CXX_FLAGS_DEBUG=-g1
  echo "test.sh: sanitizer build finished after ${SECONDS}s"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=${ROOT}/tools/lsan-suppressions.txt:print_suppressions=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_ctest sanitizer "${ROOT}/build-asan" -E 'SelfTest|^browser/|^api/postgres/'
fi

# --- Pass 3: ThreadSanitizer -----------------------------------------------------
# Data races and lock-order inversions, in the tests and in every quire server
# the API tests start (the harness fails a test whose server printed a
# ThreadSanitizer report, tests/api/harness.h). The API tests run on SQLite
# only: the server's threads and their code are the same on every backend (the
# backend sits below the Store interface; the LMDB store's unit tests and
# conformance suite do run here), and libpqxx/libpq and liblmdb are not
# instrumented, so TSan would mostly see their synchronization as missing.
# Left out, by -E:
#   - browser/client: under TSan it takes 60-80 s of the run on its own and
#     its 20 s waits for the live stream time out now and then; it drives the
#     same server code as the API tests, which run here and, unlike it, fail
#     on a server's ThreadSanitizer report.
#   - the PostgreSQL tests (unit, conformance, and api/sqlite/*Postgres*, which
#     need a database server or are postgres-specific).
#   - the conformance self-test (ConformanceSelfTest*): under TSan it takes
#     ~200 s of test time, ~100 s of the run at -j2, and runs the suite against
#     deliberately broken copies of the SQLite store, not Quire's server code.
#   - the programs not built here (ctest's <target>_NOT_BUILT placeholders).
# False positives of uninstrumented libraries (Pistache) are suppressed in
# tools/tsan-suppressions.txt, each with the reason; never a race of ours.
if [[ ${QUIRE_SKIP_TSAN:-0} == 1 ]]; then
  echo "test.sh: ThreadSanitizer pass skipped (QUIRE_SKIP_TSAN=1)"
else
  # Only what runs here is built. Full -g: the suppressions name inlined
  # frames, which -g1 does not describe. -O1: the build took 285 s instead of
  # 351 s at -O2, and the tests the same 161 s.
  QUIRE_BUILD_TARGETS="quire quire_unit_tests quire_api_tests quire_conformance_sqlite quire_conformance_lmdb" \
    "${ROOT}/tools/build.sh" "${ROOT}/build-tsan" -DQUIRE_SANITIZE=OFF -DQUIRE_TSAN=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG" \
    -DQUIRE_TEST_DATABASES=sqlite
  echo "test.sh: ThreadSanitizer build finished after ${SECONDS}s"
  # history_size=7: the longest access history, so that the earlier access
  # of a report has its stack (a report whose stack was not restored cannot
  # match a suppression). A TSAN_OPTIONS of the caller comes last and wins.
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=${ROOT}/tools/tsan-suppressions.txt${TSAN_OPTIONS:+:${TSAN_OPTIONS}}" \
    run_ctest tsan "${ROOT}/build-tsan" -E '^browser/|[Pp]ostgres|SelfTest|_NOT_BUILT$'
fi

# --- Counts, and the skips against tools/expected-skips.txt ----------------------
set +e
SKIPS_OUTPUT=$("${ROOT}/tools/check-skips.sh" "${ROOT}/tools/expected-skips.txt" "${PASS_LOGS[@]}")
SKIPS_RC=$?
set -e
echo "${SKIPS_OUTPUT}"
if [[ $(tail -n 1 <<<"${SKIPS_OUTPUT}") =~ ^skips:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
  TOTAL_PASSED=${BASH_REMATCH[1]}
  TOTAL_FAILED=$((TOTAL_FAILED + BASH_REMATCH[2]))
  TOTAL_SKIPPED=${BASH_REMATCH[3]}
else
  TOTAL_PASSED=0
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
  TOTAL_SKIPPED=0
fi
if [[ ${SKIPS_RC} -ne 0 ]]; then
  FAILED_PASSES+=("skips (tools/expected-skips.txt)")
fi
SUMMARY="summary: ${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed, ${TOTAL_SKIPPED} skipped"

if [[ ${#FAILED_PASSES[@]} -gt 0 ]]; then
  echo "test.sh: FAILED in ${FAILED_PASSES[*]} after ${SECONDS}s"
  echo "${SUMMARY}"
  exit 1
fi
echo "test.sh: all passes green after ${SECONDS}s"
echo "${SUMMARY}"
