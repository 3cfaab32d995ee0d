#!/usr/bin/env bash
# Fails (exit 1) when the chart's crds/ or config/crd/bases/ is not an exact copy of the
# repository's crds/ (the generated CRDs). Fix with charts/homeostat/sync-crds.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rc=0
for dst in charts/homeostat/crds config/crd/bases; do
  if diff -r -u "$repo/crds" "$repo/$dst"; then
    echo "$dst matches crds/"
  else
    echo "$dst drifted from crds/: run charts/homeostat/sync-crds.sh" >&2
    rc=1
  fi
done
exit $rc
