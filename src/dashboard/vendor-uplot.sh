#!/usr/bin/env bash
# Re-fetches the vendored uPlot from the npm registry and checks it against SHA256SUMS: run it to
# verify the vendored files, or with UPDATE=1 and a new UPLOT_VERSION to replace them (then review
# the diff and commit the new SHA256SUMS).
set -euo pipefail
version="${UPLOT_VERSION:-1.6.32}"
here="$(cd "$(dirname "$0")/assets/vendor/uplot" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
for file in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE; do
  if [ "${UPDATE:-0}" = 1 ]; then
    cp "$work/package/$file" "$here/"
  else
    cmp "$work/package/$file" "$here/$(basename "$file")"
  fi
done
if [ "${UPDATE:-0}" = 1 ]; then
  (cd "$here" && sha256sum uPlot.iife.min.js uPlot.min.css LICENSE > SHA256SUMS)
fi
(cd "$here" && sha256sum --check --quiet SHA256SUMS)
echo "uPlot $version: vendored files match the npm registry's package"
