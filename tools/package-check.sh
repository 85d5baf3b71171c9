#!/usr/bin/env bash
# Usage: tools/package-check.sh BUILD_DIR
# Makes the Debian package of an already built BUILD_DIR (cpack -G DEB, see
# packaging/package.cmake) and checks it:
#   - lintian: any error or warning fails, except the tags overridden, each
#     with its reason, in packaging/lintian-overrides (shipped in the package);
#   - dpkg-deb -c: the binary, the unit, the default file (a conffile), the man
#     page, copyright and changelog are there;
#   - the binary extracted with dpkg-deb -x runs: usr/bin/quire --version;
#   - the man page names every subcommand, option and environment variable
#     of `quire --help` and `quire SUBCOMMAND --help`, and /etc/default/quire
#     every environment variable, so neither falls behind the binary;
#   - systemd-analyze verify on the unit, when systemd-analyze exists.
# Leaves the package in BUILD_DIR; prints one line per problem and exits 1 if
# there is any, else ends with "package-check: OK ...".
set -euo pipefail

if [[ $# -ne 1 || ! -f $1/CMakeCache.txt ]]; then
  echo "usage: tools/package-check.sh BUILD_DIR (a configured and built build directory)" >&2
  exit 2
fi
BUILD_DIR=$(cd "$1" && pwd)
SECONDS=0
SCRATCH=$(mktemp -d)
trap 'rm -rf "${SCRATCH}"' EXIT
PROBLEMS=0
problem() {
  echo "package-check: FAILED: $*" >&2
  PROBLEMS=$((PROBLEMS + 1))
}

# --- Build the package -------------------------------------------------------
rm -f "${BUILD_DIR}"/quire_*.deb
if ! (cd "${BUILD_DIR}" && cpack -G DEB) >"${SCRATCH}/cpack.log" 2>&1; then
  cat "${SCRATCH}/cpack.log" >&2
  echo "package-check: FAILED: cpack -G DEB in ${BUILD_DIR}" >&2
  exit 1
fi
DEBS=("${BUILD_DIR}"/quire_*.deb)
if [[ ${#DEBS[@]} -ne 1 || ! -f ${DEBS[0]} ]]; then
  cat "${SCRATCH}/cpack.log" >&2
  echo "package-check: FAILED: expected one quire_*.deb in ${BUILD_DIR}, found: ${DEBS[*]}" >&2
  exit 1
fi
DEB=${DEBS[0]}
echo "package-check: built $(basename "${DEB}") ($(du -k "${DEB}" | cut -f1) KiB) in ${SECONDS}s"
ROOTFS=${SCRATCH}/root
dpkg-deb -x "${DEB}" "${ROOTFS}"

# --- lintian -------------------------------------------------------------------
# --fail-on warning: a new warning fails until it is fixed or overridden with a
# reason. Info tags are shown but never fail. (Not --show-overrides: with it,
# lintian 2.116 fails on overridden warnings too.)
if command -v lintian >/dev/null 2>&1; then
  if ! lintian --fail-on error,warning --display-info "${DEB}" >"${SCRATCH}/lintian.log" 2>&1; then
    cat "${SCRATCH}/lintian.log" >&2
    problem "lintian reports errors or warnings (fix them, or override in packaging/lintian-overrides with the reason)"
  else
    grep -v '^running with root privileges' "${SCRATCH}/lintian.log" | sed 's/^/package-check: lintian: /' || true
    overrides=$(grep -oE '^quire: [a-z0-9-]+' "${ROOTFS}/usr/share/lintian/overrides/quire" 2>/dev/null | sed 's/^quire: //' | paste -sd ' ' || true)
    echo "package-check: lintian: no errors or warnings ($(grep -c '^I: ' "${SCRATCH}/lintian.log" || true) info tags; overridden: ${overrides:-none})"
  fi
else
  problem "lintian is not installed (tools/install-deps.sh installs it)"
fi

# --- Contents --------------------------------------------------------------------
dpkg-deb -c "${DEB}" >"${SCRATCH}/contents"
for path in ./usr/bin/quire ./lib/systemd/system/quire.service ./etc/default/quire \
  ./usr/share/man/man1/quire.1.gz ./usr/share/doc/quire/copyright \
  ./usr/share/doc/quire/changelog.Debian.gz ./usr/share/lintian/overrides/quire; do
  if ! awk '{print $6}' "${SCRATCH}/contents" | grep -qxF -- "${path}"; then
    problem "the package lacks ${path#.}"
  fi
done
if ! grep -q '^-rwxr-xr-x root/root .* \./usr/bin/quire$' "${SCRATCH}/contents"; then
  problem "/usr/bin/quire is not an executable owned by root: $(grep '/usr/bin/quire$' "${SCRATCH}/contents" || true)"
fi
dpkg-deb -e "${DEB}" "${SCRATCH}/control"
if ! grep -qxF /etc/default/quire "${SCRATCH}/control/conffiles" 2>/dev/null; then
  problem "/etc/default/quire is not a conffile"
fi

# --- The extracted binary runs ------------------------------------------------
QUIRE=${ROOTFS}/usr/bin/quire
VERSION_LINE=$("${QUIRE}" --version 2>&1) || problem "usr/bin/quire --version exited $?: ${VERSION_LINE}"
PROJECT_VERSION=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "${BUILD_DIR}/CMakeCache.txt")
if [[ ! ${VERSION_LINE} =~ ^quire\ ${PROJECT_VERSION//./\\.}\ \(commit\ ([0-9a-f]{7,}(-dirty)?|unknown)\)$ ]]; then
  problem "usr/bin/quire --version printed '${VERSION_LINE}', not 'quire ${PROJECT_VERSION} (commit HASH)'"
else
  echo "package-check: usr/bin/quire --version: ${VERSION_LINE}"
fi

# --- The man page and the default file against --help -----------------------
# The man page's source with \- read as -, sections by name.
zcat "${ROOTFS}/usr/share/man/man1/quire.1.gz" | sed 's/\\-/-/g' >"${SCRATCH}/quire.1" ||
  problem "cannot read usr/share/man/man1/quire.1.gz"
man_section() { awk -v s=".SH $1" '$0 == s { f = 1; next } /^\.SH / { f = 0 } f' "${SCRATCH}/quire.1"; }
DEFAULT_FILE=${ROOTFS}/etc/default/quire
"${QUIRE}" --help >"${SCRATCH}/help" || problem "quire --help failed"
# Subcommands: the lines under "Subcommands:", two spaces and a name.
mapfile -t SUBCOMMANDS < <(awk '/^Subcommands:/ { f = 1; next } /^[^ ]/ { f = 0 } f && /^  [a-z]/ { print $1 }' "${SCRATCH}/help")
[[ ${#SUBCOMMANDS[@]} -gt 0 ]] || problem "found no subcommands in quire --help"
options_of() { grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]*' "$1" | sed 's/^[ ,]*//' | grep -vxF -- --help | sort -u || true; }
for option in $(options_of "${SCRATCH}/help"); do
  man_section "GENERAL OPTIONS" | grep -qF -- "${option}" ||
    problem "the man page (packaging/quire.1.in) lacks ${option} of quire --help in GENERAL OPTIONS"
done
for sub in "${SUBCOMMANDS[@]}"; do
  if ! man_section COMMANDS | grep -qxF ".B ${sub}"; then
    problem "the man page (packaging/quire.1.in) lacks the subcommand ${sub} in COMMANDS"
  fi
  "${QUIRE}" "${sub}" --help >"${SCRATCH}/help-${sub}" || problem "quire ${sub} --help failed"
  section="${sub^^} OPTIONS"
  for option in $(options_of "${SCRATCH}/help-${sub}"); do
    man_section "${section}" | grep -qF -- "${option}" ||
      problem "the man page (packaging/quire.1.in) lacks ${option} of quire ${sub} in ${section}"
  done
  for env in $(grep -oE 'Env:QUIRE_[A-Z0-9_]+' "${SCRATCH}/help-${sub}" | sed 's/^Env://' | sort -u); do
    # Not -w: in the source a name follows a font escape (\fPQUIRE_PORT).
    grep -qE -- "${env}([^A-Z0-9_]|\$)" "${SCRATCH}/quire.1" ||
      problem "the man page (packaging/quire.1.in) lacks ${env} (quire ${sub})"
    grep -qE "^#?${env}=" "${DEFAULT_FILE}" ||
      problem "/etc/default/quire (packaging/quire.default) lacks ${env} (quire ${sub})"
  done
done

# --- The unit --------------------------------------------------------------------
# Verified as installed, but with ExecStart pointing at the extracted binary
# (verify checks that it exists). Any message fails, not only a non-zero exit.
if command -v systemd-analyze >/dev/null 2>&1; then
  UNIT_DIR=${SCRATCH}/units
  mkdir -p "${UNIT_DIR}"
  sed -e "s|^ExecStart=/usr/bin/quire|ExecStart=${QUIRE}|" \
    "${ROOTFS}/lib/systemd/system/quire.service" >"${UNIT_DIR}/quire.service"
  if ! SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "${UNIT_DIR}/quire.service" \
    >"${SCRATCH}/verify.log" 2>&1 || [[ -s ${SCRATCH}/verify.log ]]; then
    cat "${SCRATCH}/verify.log" >&2
    problem "systemd-analyze verify quire.service"
  else
    # The exposure rating, for information (docs/operations.md, Hardening).
    exposure=$(systemd-analyze security --offline=yes "${UNIT_DIR}/quire.service" 2>/dev/null |
      sed -n 's/^.*Overall exposure level for quire.service: \([0-9.]* [A-Z]*\).*$/\1/p' || true)
    echo "package-check: systemd-analyze verify quire.service: clean (security exposure ${exposure:-unknown})"
  fi
else
  echo "package-check: systemd-analyze not found: the unit is not verified (skipped)"
fi

if [[ ${PROBLEMS} -gt 0 ]]; then
  echo "package-check: FAILED: ${PROBLEMS} problem(s) in $(basename "${DEB}") after ${SECONDS}s" >&2
  exit 1
fi
echo "package-check: OK: $(basename "${DEB}"), $(wc -l <"${SCRATCH}/contents") entries, checked in ${SECONDS}s"
