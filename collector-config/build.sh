#!/usr/bin/env bash
# Builds the project's Collector (distribution/, generated from builder-config.yaml) with Go alone and
# prints the binary's path. The binary is cached in .build/<hash of the sources>/otelcol: a second run
# with the same sources builds nothing; Go's own build cache makes a rebuild after a change quick.
#
#   collector-config/build.sh          ->  collector-config/.build/3f2a.../otelcol
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/distribution"

if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: go not found; install Go 1.26 or newer (https://go.dev/doc/install) and put it on PATH" >&2
  exit 1
fi

hash=$(cd "$here" && cat build.sh builder-config.yaml distribution/go.mod distribution/go.sum distribution/*.go \
  | sha256sum | cut -c1-16)
out="$here/.build/$hash/otelcol"
if [ ! -x "$out" ]; then
  mkdir -p "$here/.build/$hash"
  echo "build.sh: building the Collector ($src) into $out" >&2
  (cd "$src" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags='-s -w' -o "$out.tmp" .)
  mv "$out.tmp" "$out"
  # binaries of older sources are of no further use (each is ~75 MB)
  find "$here/.build" -mindepth 1 -maxdepth 1 ! -name "$hash" -exec rm -rf {} +
fi
echo "$out"
