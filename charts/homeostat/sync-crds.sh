#!/usr/bin/env bash
# Copies the repository's generated CRDs (crds/*.yaml, from `cargo run -- crd --out crds`) into
# the chart (charts/homeostat/crds/) and the kustomize base (config/crd/bases/). Run after
# regenerating the CRDs; charts/check-crds.sh fails when a copy drifts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
for dst in "$here/crds" "$repo/config/crd/bases"; do
  mkdir -p "$dst"
  rm -f "$dst"/*.yaml
  cp "$repo"/crds/*.yaml "$dst"/
  echo "synced $(find "$dst" -name '*.yaml' | wc -l) CRD file(s) into ${dst#"$repo"/}"
done
