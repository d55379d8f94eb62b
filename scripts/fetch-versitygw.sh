#!/usr/bin/env bash
# Build the S3 server of an s3:// lake on loopback: versitygw (a Go S3 gateway over a plain
# directory, which also sends bucket events to Kafka), at a pinned version, with the Go
# toolchain from the Go module proxy. Idempotent: a binary already built returns at once.
#
#   TRIPFLOW_S3_SERVER_BIN  where the binary goes
#                           (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/versitygw-1.8.0/versitygw)
set -euo pipefail

VERSION=1.8.0
TARGET="${TRIPFLOW_S3_SERVER_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/versitygw-${VERSION}/versitygw}"

if [ -x "$TARGET" ]; then
  exit 0
fi
# Go's own installer puts it in /usr/local/go, which a non-login shell may not have on PATH.
[ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || {
  echo "fetch-versitygw: go not found (Go 1.24 or newer: https://go.dev/dl)" >&2
  exit 1
}

# Build into a sibling directory, then move the binary in: an interrupted build never leaves
# a binary that looks complete.
parent="$(dirname "$TARGET")"
mkdir -p "$parent"
staging="$(mktemp -d "$parent/.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

echo "fetch-versitygw: building versitygw v${VERSION} with $(go version | cut -d' ' -f3) (about 2 minutes, once)"
if ! GOBIN="$staging" GOFLAGS=-trimpath go install "github.com/versity/versitygw/cmd/versitygw@v${VERSION}" \
  >"$staging/build.log" 2>&1; then
  tail -40 "$staging/build.log" >&2
  echo "fetch-versitygw: the build failed" >&2
  exit 1
fi
mv "$staging/versitygw" "$TARGET"
