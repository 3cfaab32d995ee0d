#!/usr/bin/env bash
# Server-side dry run of the schema corpus against the cluster on KUBECONFIG (with crds/ applied):
# every object of refused.yaml must be refused with an error containing its
# homeostat.dev/expect annotation, every object of accepted.yaml accepted. Prints one line per
# object; exit 1 on any mismatch.
#   tests/schema/check.sh [namespace]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBECTL=${KUBECTL:-kubectl}
NS=${1:-default}
python3 - "$here" "$KUBECTL" "$NS" <<'EOF'
import subprocess, sys, yaml
here, kubectl, ns = sys.argv[1:4]
fail = 0
for name, want_refused in (("refused.yaml", True), ("accepted.yaml", False)):
    for d in yaml.safe_load_all(open(f"{here}/{name}")):
        if not d:
            continue
        expect = d["metadata"].get("annotations", {}).get("homeostat.dev/expect", "")
        r = subprocess.run([kubectl, "apply", "--dry-run=server", "-n", ns, "-f", "-"],
                           input=yaml.safe_dump(d), capture_output=True, text=True)
        refused = r.returncode != 0
        err = " ".join(r.stderr.split())
        ok = refused == want_refused and (not want_refused or expect in err)
        fail |= not ok
        shown = d["metadata"]["name"]
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        verdict = "refused" if refused else "accepted"
        print(f"  {'ok ' if ok else 'BAD'} {verdict:8} {shown:40} {err[:150] if refused else ''}")
        if not ok and want_refused and refused:
            print(f"      expected the error to contain: {expect!r}")
sys.exit(fail)
EOF
