#!/usr/bin/env bash
# Installs the Debian packages Quire needs to build and test (bookworm),
# Chromium and Node for the browser tests among them.
# Idempotent: when everything is present it is a single dpkg-query and exits.
# Works as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format
  libpistache-dev libsqlite3-dev libpqxx-dev postgresql-15
  liblmdb++-dev liblmdb-dev nlohmann-json3-dev libgtest-dev libgmock-dev
  libsodium-dev libutf8proc-dev libcli11-dev libcurl4-openssl-dev ca-certificates
  chromium
  lintian dpkg-dev  # tools/package-check.sh: lintian, and dpkg-shlibdeps for the Depends
)
# The browser tests (tests/browser) also need node and npm. A node or npm
# already on PATH is used as it is (NodeSource's nodejs, say, which bundles npm
# and which Debian's npm would conflict with); otherwise Debian's (Node 18).
if ! command -v node >/dev/null 2>&1; then
  PACKAGES+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(npm)
fi

# Packages of PACKAGES that are not fully installed.
missing_packages() {
  local installed
  # Unknown packages make dpkg-query exit 1 and print to stderr; they count as missing.
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
  local p
  for p in "${PACKAGES[@]}"; do
    if ! grep -qx "${p} installed" <<<"${installed}"; then
      echo "${p}"
    fi
  done
}

mapfile -t missing < <(missing_packages)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root without sudo" >&2
    exit 1
  fi
fi

STAMP=/var/tmp/quire-apt-update.stamp
LISTS=/var/lib/apt/lists

# apt-get update unless it ran less than an hour ago (our stamp or the lists folder).
lists_fresh() {
  local f
  for f in "${STAMP}" "${LISTS}"; do
    if [[ -e ${f} ]] && [[ -n $(find "${f}" -maxdepth 0 -mmin -60 2>/dev/null) ]]; then
      # The lists folder only counts when it holds package lists at all.
      if [[ ${f} == "${STAMP}" ]] || compgen -G "${LISTS}/*_Packages*" >/dev/null; then
        return 0
      fi
    fi
  done
  return 1
}

apt_update() {
  echo "install-deps: apt-get update" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  touch "${STAMP}" 2>/dev/null || "${SUDO[@]}" touch "${STAMP}" || true
}

apt_install() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

echo "install-deps: installing ${missing[*]}" >&2
updated=0
if ! lists_fresh; then
  apt_update
  updated=1
fi
if ! apt_install "${missing[@]}"; then
  # Lists a little older than an hour can still point at versions the mirror dropped.
  if [[ ${updated} -eq 0 ]]; then
    apt_update
    apt_install "${missing[@]}"
  else
    exit 1
  fi
fi

mapfile -t still < <(missing_packages)
if [[ ${#still[@]} -ne 0 ]]; then
  echo "install-deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
