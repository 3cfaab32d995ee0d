#!/usr/bin/env bash
# Verifies the Helm chart: CRD copies, lint (plain and --strict), schema rejections, rendering of
# the main values variants, the PrometheusRule with promtool (when installed) and, when a cluster
# answers on KUBECONFIG, a server-side dry run of every rendered object.
#
#   charts/verify.sh                    # everything that can run here
#   VERIFY_RBAC=1 charts/verify.sh      # also install the chart for real into a scratch namespace,
#                                       # check the ServiceAccount's permissions with
#                                       # `kubectl auth can-i` and prove the ValidatingAdmissionPolicy
#                                       # with its token (charts/vap-check.sh), then uninstall
#
# Environment:
#   HELM, KUBECTL, PROMTOOL   binaries (default: ~/.cache/homeostat/... when present, else PATH)
#   VERIFY_NAMESPACE          release namespace of the dry runs (must exist; default: default)
#   VERIFY_WATCH_NAMESPACES   existing namespaces for the watchNamespaces dry run (default: default,kube-public)
#   VERIFY_APPLY_CRDS=0       do not server-side apply crds/ before the dry runs (they are needed
#                             only by config/samples; the chart's objects do not depend on them)
#   VERIFY_RBAC=1             the real install + can-i check described above
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
chart="$here/homeostat"
cache=${HOMEOSTAT_CACHE:-$HOME/.cache/homeostat}

pick() { # pick VAR candidate... : first executable candidate, else the name on PATH
  local c
  for c in "${@:2}"; do
    if [[ -x $c ]]; then printf '%s' "$c"; return; fi
  done
  command -v "$1" || true
}
HELM=${HELM:-$(pick helm "$cache/helm-v3.22.0/bin/helm")}
KUBECTL=${KUBECTL:-$(pick kubectl "$cache/k8s-v1.34.4/bin/kubectl")}
PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
NS=${VERIFY_NAMESPACE:-default}
WATCH=${VERIFY_WATCH_NAMESPACES:-default,kube-public}

[[ -n $HELM && -x $HELM ]] || { echo "helm not found (set HELM or run e2e/cluster/build)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
step() { printf '\n== %s\n' "$*"; }
bad() { echo "FAIL: $*" >&2; fail=1; }

kinds() { # kinds FILE: Kind/name per rendered document
  awk '/^kind:/{k=$2} /^  name:/{if(k!=""){print k"/"$2; k=""}}' "$1" | paste -sd' ' -
}

step "chart CRDs match crds/"
"$here/check-crds.sh" || bad "chart CRDs drifted"

step "helm lint"
"$HELM" lint "$chart" || bad "helm lint"
step "helm lint --strict"
"$HELM" lint --strict "$chart" || bad "helm lint --strict"

# name|helm flags
variants=(
  "default|"
  "replicas2|--set replicaCount=2"
  "watchNamespaces|--set watchNamespaces={a,b}"
  "monitoring|--set serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true"
  "everything|--set replicaCount=3,prometheusUrl=http://prometheus.monitoring:9090,watchNamespaces={a,b},leaderElection.force=true,rbac.secretNames={prom-token},evaluation.step=30s,serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true,egress.prometheusAllow={https://thanos.example.com/tenant-a},egress.webhookAllow={https://hooks.slack.com/services/T0/},egress.webhookAllowPublic=true,egress.prometheusMaxResponseBytes=1048576"
  "noAdmissionPolicy|--set admissionPolicy.enabled=false"
)
for v in "${variants[@]}"; do
  name=${v%%|*} flags=${v#*|}
  step "helm lint --strict ($name)"
  # shellcheck disable=SC2086
  "$HELM" lint --strict "$chart" $flags >/dev/null || bad "helm lint --strict $flags"
  step "helm template ($name)"
  # shellcheck disable=SC2086
  if "$HELM" template homeostat "$chart" --namespace homeostat-system $flags >"$tmp/$name.yaml"; then
    echo "kinds: $(kinds "$tmp/$name.yaml")"
  else
    bad "helm template $flags"
  fi
done

step "helm template: expected objects"
expect() { grep -q -e "$2" "$tmp/$1.yaml" || bad "$1: expected $2"; }
refuse() { if grep -q -e "$2" "$tmp/$1.yaml"; then bad "$1: unexpected $2"; fi; }
refuse default "kind: PodDisruptionBudget"
refuse default "- --leader-elect$"
expect default "type: Recreate"
expect replicas2 "kind: PodDisruptionBudget"
expect replicas2 "- --leader-elect$"
expect default "name: homeostat-leader-election"
case " $(kinds "$tmp/watchNamespaces.yaml") " in
  *" ClusterRole/homeostat "*) bad "watchNamespaces: the all-namespaces ClusterRole is rendered" ;;
esac
expect watchNamespaces "namespace: a"
expect watchNamespaces "namespace: b"
expect monitoring "kind: ServiceMonitor"
expect monitoring "kind: PrometheusRule"
expect monitoring "grafana_dashboard: \"1\""
refuse default "resources: \[\"secrets\"\]"
expect everything 'resourceNames: \["prom-token"\]'
expect default "kind: ValidatingAdmissionPolicy$"
expect default "kind: ValidatingAdmissionPolicyBinding$"
expect default "request.userInfo.username == 'system:serviceaccount:homeostat-system:homeostat'"
refuse noAdmissionPolicy "kind: ValidatingAdmissionPolicy"
expect everything '- "--prometheus-allow=https://thanos.example.com/tenant-a"'
expect everything '- "--webhook-allow=https://hooks.slack.com/services/T0/"'
expect everything "- --webhook-allow-public"
expect everything '- "--prometheus-max-response-bytes=1048576"'
refuse default "prometheus-max-response-bytes"
refuse default "webhook-allow"
[[ $fail == 0 ]] && echo ok

step "values.schema.json rejects bad values"
for badv in replicaCount=0 image.pullPolicy=Sometimes 'watchNamespaces={Bad_NS}' \
  leaderElection.leaseDuration=soon prometheusUrl=prometheus:9090 service.type=Ingress typo=1 \
  'rbac.secretNames={Bad/Name}' rbac.readSecrets=true 'egress.webhookAllow={ftp://x}' \
  'egress.prometheusAllow={http://user@evil:9090}' egress.prometheusMaxResponseBytes=0; do
  if "$HELM" template homeostat "$chart" --set "$badv" >/dev/null 2>&1; then
    bad "schema accepted $badv"
  else
    echo "rejected: $badv"
  fi
done

step "PrometheusRule: promtool check rules + test rules"
if [[ -n $PROMTOOL ]]; then
  python3 - "$tmp/monitoring.yaml" >"$tmp/rules.yaml" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "PrometheusRule":
        yaml.safe_dump(d["spec"], sys.stdout, sort_keys=False)
EOF
  "$PROMTOOL" check rules "$tmp/rules.yaml" || bad "promtool check rules"
  # Unit tests (alerts_test.yaml) expect release "homeostat" in namespace homeostat-system,
  # which is how the monitoring variant above is rendered.
  cp "$here/alerts_test.yaml" "$tmp/"
  (cd "$tmp" && "$PROMTOOL" test rules alerts_test.yaml) || bad "promtool test rules"
else
  echo "skipped: promtool not installed"
fi

step "Argo CD health checks (Lua)"
lua=$(command -v lua5.4 || command -v lua5.3 || command -v lua5.1 || command -v luajit || command -v lua || true)
if [[ -n $lua ]]; then
  "$lua" "$chart/argocd/test.lua" || bad "argocd health checks"
else
  echo "skipped: no lua interpreter (apt-get install lua5.4)"
fi

step "dashboard JSON"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len([p for p in d["panels"] if p["type"]!="row"]), "panels")' \
  "$chart/dashboards/homeostat.json" || bad "dashboards/homeostat.json is not JSON"

step "kustomize: config/default and config/samples render"
if [[ -n $KUBECTL ]]; then
  for k in default samples; do
    if "$KUBECTL" kustomize "$repo/config/$k" >"$tmp/kustomize-$k.yaml"; then
      echo "config/$k: $(kinds "$tmp/kustomize-$k.yaml")"
    else
      bad "kubectl kustomize config/$k"
    fi
  done
else
  echo "skipped: kubectl not found"
fi

step "server-side dry run"
if [[ -z $KUBECTL ]] || ! "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  echo "skipped: no cluster reachable (KUBECONFIG=${KUBECONFIG:-unset})"
else
  if [[ ${VERIFY_APPLY_CRDS:-1} != 0 ]]; then
    "$KUBECTL" apply --server-side --field-manager=homeostat-verify -f "$repo/crds/" || bad "applying crds/"
    "$KUBECTL" wait --for condition=Established --timeout=60s \
      crd/remediationpolicies.homeostat.dev crd/remediations.homeostat.dev >/dev/null || bad "CRDs not Established"
  fi
  has_monitoring=0
  if "$KUBECTL" get crd servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
    has_monitoring=1
  fi
  for v in "${variants[@]}"; do
    name=${v%%|*} flags=${v#*|}
    flags=${flags//watchNamespaces=\{a,b\}/watchNamespaces=\{$WATCH\}}
    echo "-- $name (namespace $NS${flags:+, $flags})"
    # shellcheck disable=SC2086
    "$HELM" template homeostat "$chart" --namespace "$NS" $flags >"$tmp/dry-$name.yaml"
    if [[ $has_monitoring == 0 ]]; then
      python3 - "$tmp/dry-$name.yaml" <<'EOF'
import sys, yaml
p = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(p)) if d]
keep = [d for d in docs if d["apiVersion"] != "monitoring.coreos.com/v1"]
skipped = [d["kind"] for d in docs if d not in keep]
if skipped:
    print("  (not dry-run, no monitoring.coreos.com CRDs in this cluster: %s)" % ", ".join(skipped))
yaml.safe_dump_all(keep, open(p, "w"), sort_keys=False)
EOF
    fi
    "$KUBECTL" apply --dry-run=server -f "$tmp/dry-$name.yaml" || bad "dry run of $name"
  done

  echo "-- config/samples (namespace $NS)"
  "$KUBECTL" apply --dry-run=server -n "$NS" -f "$repo/config/samples/" || bad "dry run of config/samples"

  step "CRD schema: tests/schema corpus (refused / accepted by the apiserver)"
  if [[ ${VERIFY_APPLY_CRDS:-1} != 0 ]]; then
    KUBECTL=$KUBECTL "$repo/tests/schema/check.sh" "$NS" || bad "schema corpus"
  else
    echo "skipped: VERIFY_APPLY_CRDS=0 (the corpus needs this tree's crds/)"
  fi

  if [[ ${VERIFY_RBAC:-0} == 1 ]]; then
    step "real install + ServiceAccount permissions (kubectl auth can-i)"
    vns="homeostat-verify-$$" wns="homeostat-verify-$$-w"
    rel="hv$$"
    cleanup_rbac() {
      "$HELM" uninstall "$rel" -n "$vns" --wait=false >/dev/null 2>&1 || true
      "$KUBECTL" delete ns "$vns" "$wns" --wait=false >/dev/null 2>&1 || true
    }
    trap 'cleanup_rbac; rm -rf "$tmp"' EXIT
    "$KUBECTL" create ns "$vns" >/dev/null && "$KUBECTL" create ns "$wns" >/dev/null
    "$HELM" install "$rel" "$chart" -n "$vns" --skip-crds \
      --set replicaCount=2 --set "watchNamespaces={$wns}" --set "rbac.secretNames={prom-token}" \
      >/dev/null || bad "helm install"
    sa="system:serviceaccount:$vns:$rel-homeostat"
    can() { # can EXPECT NS VERB RESOURCE[/NAME] [SUBRESOURCE]
      local want=$1 ns=$2 verb=$3 res=$4 sub=${5:-} got args
      args=(auth can-i "$verb" "$res" --as "$sa")
      [[ -n $sub ]] && args+=(--subresource "$sub")
      if [[ -n $ns ]]; then args+=(-n "$ns"); else args+=(--all-namespaces); fi
      got=$("$KUBECTL" "${args[@]}" 2>/dev/null || true)
      if [[ $got == "$want" ]]; then
        printf '  %-3s %-6s %-50s %s\n' "$got" "$verb" "$res${sub:+ ($sub)}" "${ns:-(all namespaces)}"
      else
        bad "can-i $verb $res ${sub} in ${ns:-all}: got '$got', want '$want'"
      fi
    }
    for vb in list watch; do can yes "$wns" $vb remediationpolicies.homeostat.dev; done
    can yes "$wns" patch remediationpolicies.homeostat.dev status
    for vb in list watch create delete; do can yes "$wns" $vb remediations.homeostat.dev; done
    can yes "$wns" patch remediations.homeostat.dev status
    for r in deployments.apps statefulsets.apps; do for vb in get list watch patch; do can yes "$wns" $vb $r; done; done
    for vb in list watch; do can yes "$wns" $vb replicasets.apps; done
    for r in deployments.apps statefulsets.apps; do for vb in get patch; do can yes "$wns" $vb $r scale; done; done
    for vb in get list watch; do can yes "$wns" $vb pods; done
    can yes "$wns" create pods eviction
    can yes "$wns" patch pods resize
    can yes "" get nodes
    can no "" list nodes
    for vb in get list watch patch; do can yes "$wns" $vb horizontalpodautoscalers.autoscaling; done
    # KEDA's CRD is usually not installed: kubectl auth can-i cannot name its resource then, so ask
    # a SubjectAccessReview directly.
    sar() { # sar EXPECT NS VERB GROUP RESOURCE
      local want=$1 ns=$2 verb=$3 group=$4 res=$5 got
      got=$(printf '{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"%s","groups":["system:serviceaccounts","system:serviceaccounts:%s","system:authenticated"],"resourceAttributes":{"namespace":"%s","verb":"%s","group":"%s","resource":"%s"}}}' \
        "$sa" "$vns" "$ns" "$verb" "$group" "$res" | "$KUBECTL" create -o jsonpath='{.status.allowed}' -f - 2>/dev/null || true)
      [[ $got == true ]] && got=yes || got=no
      if [[ $got == "$want" ]]; then
        printf '  %-3s %-6s %-50s %s\n' "$got" "$verb" "$res.$group" "$ns"
      else
        bad "SubjectAccessReview $verb $res.$group in $ns: got '$got', want '$want'"
      fi
    }
    for vb in list watch; do sar yes "$wns" $vb keda.sh scaledobjects; done
    can yes "$wns" get secrets/prom-token
    for vb in create patch; do can yes "$wns" $vb events.events.k8s.io; done
    # Leases: read (list: shard and member Leases by label), create, update with their
    # resourceVersion, delete (a replica's own member Lease on shutdown); no patch, no watch.
    for vb in get list create update delete; do can yes "$vns" $vb leases.coordination.k8s.io; done
    # Only what the code calls: no writes to ReplicaSets, no reads of pods' logs or exec.
    can no "$wns" patch replicasets.apps
    can no "$wns" get pods log
    can no "$wns" create pods exec
    can no "" list remediationpolicies.homeostat.dev
    # Least privilege: nothing outside the watched namespace, nothing not needed.
    can no "$vns" get remediationpolicies.homeostat.dev
    can no "$vns" get secrets
    can no "" get secrets
    can no "" watch remediationpolicies.homeostat.dev
    can no "$wns" delete pods
    can no "$wns" update deployments.apps
    can no "$wns" list secrets
    can no "$wns" get secrets/other-secret
    can no "$wns" update remediations.homeostat.dev status
    can no "$wns" create pods
    can no "$wns" update deployments.apps scale
    can no "$wns" create horizontalpodautoscalers.autoscaling
    can no "$wns" delete horizontalpodautoscalers.autoscaling
    sar no "$wns" patch keda.sh scaledobjects
    sar no "$vns" list keda.sh scaledobjects
    can no "$vns" list horizontalpodautoscalers.autoscaling
    can no "$vns" patch leases.coordination.k8s.io/homeostat-leader
    can no "$vns" watch leases.coordination.k8s.io
    can no "$wns" get leases.coordination.k8s.io/homeostat-leader
    can no "" list customresourcedefinitions.apiextensions.k8s.io

    step "ValidatingAdmissionPolicy: what the operator's own token may change"
    KUBECTL=$KUBECTL "$here/vap-check.sh" "$vns" "$rel-homeostat" "$wns" || bad "admission policy check"
    cleanup_rbac
  fi
fi

echo
if [[ $fail == 0 ]]; then echo "charts/verify.sh: all checks passed"; else echo "charts/verify.sh: FAILED" >&2; fi
exit $fail
