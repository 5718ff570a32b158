#!/usr/bin/env bash
# Builds the real servers the tests run against, into DIR (default
# .cache/bin): MinIO (S3), FerretDB v1.24.0 (the MongoDB-wire server;
# MongoDB itself cannot be installed here), and the example OpenID provider
# of github.com/zitadel/oidc/v3 as oidc-op (for the OpenID Connect login
# tests); and installs PostgreSQL from Debian when it is missing: the tests
# run FerretDB on its PostgreSQL handler (internal/testservers starts both).
#
# Idempotent: each binary has a stamp file DIR/<name>.version holding the
# version it was built from; a binary whose stamp matches is not rebuilt.
# Needs only Go (/usr/local/go or on PATH) and a module proxy; no docker.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FERRETDB_VERSION=v1.24.0
ZITADEL_OIDC_VERSION=v3.52.0

DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/.cache/bin}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "install-test-servers: go not found (expected /usr/local/go/bin/go)" >&2; exit 1; }

log() { echo "install-test-servers: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# current NAME VERSION: the binary exists, its stamp says VERSION and it runs.
current() {
	[ -x "$DIR/$1" ] && [ "$(cat "$DIR/$1.version" 2>/dev/null)" = "$2" ] &&
		"$DIR/$1" --version >/dev/null 2>&1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/posthub-testservers.XXXXXX")
# The FerretDB copy is made writable below, so it can be removed.
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

install_minio() {
	if current minio "$MINIO_VERSION"; then
		log "minio $MINIO_VERSION already installed"
		return
	fi
	log "building minio $MINIO_VERSION (several minutes)..."
	local start=$SECONDS
	rm -f "$DIR/minio.version"
	# Outside any module, so posthub's go.mod plays no part.
	(cd "$WORK" && GOBIN="$DIR" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION") ||
		die "go install github.com/minio/minio@$MINIO_VERSION failed"
	"$DIR/minio" --version >/dev/null || die "built minio does not run"
	echo "$MINIO_VERSION" >"$DIR/minio.version"
	log "minio built in $((SECONDS - start))s: $("$DIR/minio" --version 2>&1 | sed -n 1p)"
}

install_ferretdb() {
	if current ferretdb "$FERRETDB_VERSION"; then
		log "ferretdb $FERRETDB_VERSION already installed"
		return
	fi
	log "building ferretdb $FERRETDB_VERSION..."
	local start=$SECONDS moddir src
	rm -f "$DIR/ferretdb.version"
	moddir=$(cd "$WORK" && GOFLAGS= go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	[ -n "$moddir" ] && [ -d "$moddir" ] || die "go mod download github.com/FerretDB/FerretDB@$FERRETDB_VERSION gave no directory"
	# The module cache is read-only and the published module lacks
	# build/version/version.txt, which the version package embeds.
	src="$WORK/ferretdb"
	cp -R "$moddir" "$src"
	chmod -R u+w "$src"
	mkdir -p "$src/build/version"
	echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
	(cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -o "$DIR/ferretdb" ./cmd/ferretdb) ||
		die "go build ./cmd/ferretdb ($FERRETDB_VERSION) failed"
	# Capture first: grep -q would close the pipe early and, with pipefail,
	# turn ferretdb's SIGPIPE into a failure.
	fver=$("$DIR/ferretdb" --version 2>&1) || die "built ferretdb does not run"
	grep -q "$FERRETDB_VERSION" <<<"$fver" || die "built ferretdb does not run or does not report $FERRETDB_VERSION"
	echo "$FERRETDB_VERSION" >"$DIR/ferretdb.version"
	log "ferretdb built in $((SECONDS - start))s: $(sed -n 1p <<<"$fver")"
}

install_oidc_op() {
	# The example server has no --version: the stamp and the module version
	# Go recorded in the binary tell.
	if [ -x "$DIR/oidc-op" ] && [ "$(cat "$DIR/oidc-op.version" 2>/dev/null)" = "$ZITADEL_OIDC_VERSION" ] &&
		go version -m "$DIR/oidc-op" 2>/dev/null | grep -q "github.com/zitadel/oidc/v3[[:space:]]*$ZITADEL_OIDC_VERSION"; then
		log "oidc-op (zitadel/oidc $ZITADEL_OIDC_VERSION example server) already installed"
		return
	fi
	log "building oidc-op (zitadel/oidc $ZITADEL_OIDC_VERSION example server)..."
	local start=$SECONDS
	rm -f "$DIR/oidc-op.version"
	mkdir -p "$WORK/oidc-op"
	(cd "$WORK" && GOBIN="$WORK/oidc-op" GOFLAGS=-buildvcs=false go install "github.com/zitadel/oidc/v3/example/server@$ZITADEL_OIDC_VERSION") ||
		die "go install github.com/zitadel/oidc/v3/example/server@$ZITADEL_OIDC_VERSION failed"
	mv "$WORK/oidc-op/server" "$DIR/oidc-op"
	echo "$ZITADEL_OIDC_VERSION" >"$DIR/oidc-op.version"
	log "oidc-op built in $((SECONDS - start))s"
}

install_postgresql() {
	if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1; then
		log "postgresql already installed"
		return
	fi
	log "installing postgresql (Debian package)..."
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		sudo -n true 2>/dev/null || die "postgresql is missing: run sudo apt-get install -y postgresql"
		sudo="sudo -n"
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq && $sudo apt-get install -y -qq postgresql >/dev/null ||
		die "apt-get install postgresql failed"
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
}

install_postgresql
install_ferretdb
install_minio
install_oidc_op
log "test servers ready in $DIR"
