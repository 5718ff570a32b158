#!/usr/bin/env bash
# Ensures the system packages posthub needs: libxml2's headers for cgo and
# xmllint (the floor `make bench` measures against); with the argument
# "test" also Chromium for the browser tests and PostgreSQL, under which the
# tests run FerretDB (internal/testservers starts a server of its own; the
# package's own cluster is not used). Installs them with apt when it
# can (root, or password-less sudo); otherwise says exactly what to run.
set -euo pipefail
need=()
pkg-config --exists libxml-2.0 2>/dev/null || need+=(libxml2-dev pkg-config)
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -x /usr/bin/time ] || need+=(time)
if [ "${1:-}" = test ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # Debian keeps the server binaries off $PATH, in /usr/lib/postgresql/N/bin.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "posthub needs: ${need[*]}" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "run: sudo apt-get install -y ${need[*]}" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}"
