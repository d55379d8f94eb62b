#!/usr/bin/env bash
# Put the web page's JavaScript libraries into the package's static files: each one an exact
# version from npm (`npm pack`, kept in a cache), checked against the SHA-512 pinned below,
# and only the files the page loads copied into src/tripflow/api/static/vendor/NAME-VERSION/.
# The copies are not committed (.gitignore); `make setup` runs this script. Idempotent: a
# complete copy (marked by a file written last, naming this script's checksum) returns at once.
#
#   TRIPFLOW_NPM_CACHE  where the package archives are kept
#                       (default ${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/npm)
set -euo pipefail
cd "$(dirname "$0")/.."

# name version sha512-of-the-archive files-to-copy (paths inside the archive's package/)
PACKAGES=(
  "leaflet 1.9.4 9f14b5ca7cc93a63a51e9fa22f71725aa2bcf46b4d2fc53caef94c3ac41d4d3b2cc59c025e1f0dd8d07718340e2fe611dd79d6c99031c108b15116fe140ef83c dist/leaflet.js dist/leaflet.css dist/images/layers.png dist/images/layers-2x.png dist/images/marker-icon.png dist/images/marker-icon-2x.png dist/images/marker-shadow.png LICENSE"
  "uplot 1.6.32 2883159c6ebccefbb95d751b0b82d010f9e1c0ec41b8bc96d401eda66e882935c89a46cb824332fa369b8cb8122cc6ac36e186cd09bf7a9ded3a4c93c6989023 dist/uPlot.iife.min.js dist/uPlot.min.css"
)

VENDOR=src/tripflow/api/static/vendor
CACHE="${TRIPFLOW_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tripflow/npm}"
MARKER="$VENDOR/.complete"
# A changed list (another version, another file) copies again.
WANT="$(sha256sum "$0" | cut -d' ' -f1)"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || scripts/apt-install.sh vendor-web npm

mkdir -p "$CACHE" "$(dirname "$VENDOR")"
# Copy into a sibling directory, then swap it in: an interrupted run never leaves a copy
# that looks complete.
staging="$(mktemp -d "$(dirname "$VENDOR")/.vendor.XXXXXX")"
unpacked="$(mktemp -d)"
trap 'rm -rf "$staging" "$unpacked"' EXIT

for line in "${PACKAGES[@]}"; do
  read -r name version sha512 files <<<"$line"
  archive="$CACHE/$name-$version.tgz"
  if [ ! -f "$archive" ]; then
    echo "vendor-web: npm pack $name@$version"
    npm pack --silent "$name@$version" --pack-destination "$CACHE" >/dev/null
  fi
  if [ "$(sha512sum "$archive" | cut -d' ' -f1)" != "$sha512" ]; then
    echo "vendor-web: $archive does not have the pinned SHA-512; delete it and run again" >&2
    exit 1
  fi
  mkdir -p "$unpacked/$name"
  tar -xzf "$archive" -C "$unpacked/$name"
  target="$staging/$name-$version"
  for file in $files; do
    # dist/ is dropped: vendor/leaflet-1.9.4/leaflet.js keeps leaflet.css's images/ beside it.
    destination="$target/${file#dist/}"
    mkdir -p "$(dirname "$destination")"
    cp "$unpacked/$name/package/$file" "$destination"
  done
done

rm -rf "$VENDOR"
mv "$staging" "$VENDOR"
trap 'rm -rf "$unpacked"' EXIT
echo "$WANT" >"$MARKER"
echo "vendor-web: $(find "$VENDOR" -type f ! -name .complete | wc -l) files in $VENDOR"
