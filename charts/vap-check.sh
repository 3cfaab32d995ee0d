#!/usr/bin/env bash
# Proves the chart's ValidatingAdmissionPolicy on a live cluster, with a token of the operator's
# ServiceAccount (TokenRequest API, no client certificate): the changes the operator makes
# (replicas, the restartedAt pod template annotation, an HPA's minReplicas, an eviction) are admitted, every other
# change of a Deployment or StatefulSet is refused with the policy's own message, and an
# administrator is not restricted. Needs the chart installed (RBAC + policy) with NS watched.
#   charts/vap-check.sh RELEASE_NAMESPACE SERVICEACCOUNT WATCHED_NAMESPACE
# Sourced by charts/verify.sh (VERIFY_RBAC=1), or run on its own. Exit 1 on any mismatch.
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}
rns=$1 sa=$2 wns=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

tok=$("$KUBECTL" -n "$rns" create token "$sa" --duration 10m)
server=$("$KUBECTL" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.server}')
ca=$("$KUBECTL" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
cat >"$tmp/sa.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: u, user: {token: "$tok"}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: "$wns"}}]
current-context: c
EOF
op() { KUBECONFIG="$tmp/sa.kubeconfig" "$KUBECTL" "$@"; }
who=$(op auth whoami -o jsonpath='{.status.userInfo.username}')
[[ $who == "system:serviceaccount:$rns:$sa" ]] || { echo "FAIL: the token authenticates as $who" >&2; exit 1; }
echo "  acting as $who"

"$KUBECTL" -n "$wns" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: vap-web, labels: {app: vap-web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: vap-web}}
  template:
    metadata: {labels: {app: vap-web}, annotations: {team: shop}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: app, image: registry.k8s.io/pause:3.10}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: vap-db}
spec:
  replicas: 1
  serviceName: vap-db
  selector: {matchLabels: {app: vap-db}}
  template:
    metadata: {labels: {app: vap-db}}
    spec: {containers: [{name: db, image: registry.k8s.io/pause:3.10}]}
EOF
trap '"$KUBECTL" -n "$wns" delete deployment/vap-web statefulset/vap-db --wait=false >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

admit() { # admit DESCRIPTION KUBECTL-ARGS...
  local what=$1
  shift
  if op "$@" >/dev/null 2>"$tmp/err"; then
    printf '  admitted  %s\n' "$what"
  else
    bad "an allowed change was refused ($what): $(tr '\n' ' ' <"$tmp/err")"
  fi
}
deny() { # deny DESCRIPTION EXPECTED-MESSAGE KUBECTL-ARGS...
  local what=$1 want=$2
  shift 2
  if op "$@" >/dev/null 2>"$tmp/err"; then
    bad "a forbidden change was admitted ($what)"
  elif grep -qF -- "$want" "$tmp/err"; then
    printf '  refused   %-55s "%s"\n' "$what" "$want"
  else
    bad "$what was refused, but not by the admission policy: $(tr '\n' ' ' <"$tmp/err")"
  fi
}

r=kubectl.kubernetes.io/restartedAt
stamp() { printf '{"spec":{"template":{"metadata":{"annotations":{"%s":"%s"}}}}}' "$r" "$1"; }
for w in deployment/vap-web statefulset/vap-db; do
  admit "$w: spec.replicas (scale subresource)" patch "$w" --subresource=scale --type=merge -p '{"spec":{"replicas":2}}'
  admit "$w: spec.replicas" patch "$w" --type=merge -p '{"spec":{"replicas":1}}'
  admit "$w: $r" patch "$w" --type=merge -p "$(stamp 2026-12-01T11:00:00.123Z)"
  deny "$w: container image" "not the rest of the pod template" \
    patch "$w" --type=json -p '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil:latest"}]'
  deny "$w: privileged container" "not the rest of the pod template" \
    patch "$w" --type=json -p '[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]'
  deny "$w: pod template label" "not the rest of the pod template" \
    patch "$w" --type=merge -p '{"spec":{"template":{"metadata":{"labels":{"extra":"x"}}}}}'
  deny "$w: another pod template annotation" "only the $r annotation" \
    patch "$w" --type=merge -p '{"spec":{"template":{"metadata":{"annotations":{"sidecar.istio.io/inject":"false"}}}}}'
  deny "$w: $r that is not a time" "must be an RFC 3339 time" \
    patch "$w" --type=merge -p "$(stamp now)"
  deny "$w: a label of the workload" "may not change the labels, annotations" \
    patch "$w" --type=merge -p '{"metadata":{"labels":{"owned":"no"}}}'
done
deny "deployment/vap-web: spec.paused" "not spec.paused" \
  patch deployment/vap-web --type=merge -p '{"spec":{"paused":true}}'
deny "deployment/vap-web: spec.strategy" "not spec.strategy" \
  patch deployment/vap-web --type=merge -p '{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}'
deny "statefulset/vap-db: spec.updateStrategy" "not spec.updateStrategy" \
  patch statefulset/vap-db --type=merge -p '{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}'

# HPAs: a Scale acts through the HPA that owns the replicas, raising spec.minReplicas; nothing else.
"$KUBECTL" -n "$wns" apply -f - >/dev/null <<'EOF'
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: vap-web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: vap-web}
  minReplicas: 1
  maxReplicas: 4
EOF
admit "hpa/vap-web: spec.minReplicas" patch hpa/vap-web --type=merge -p '{"spec":{"minReplicas":2}}'
deny "hpa/vap-web: spec.maxReplicas" "only spec.minReplicas" \
  patch hpa/vap-web --type=merge -p '{"spec":{"maxReplicas":40}}'
deny "hpa/vap-web: spec.scaleTargetRef" "only spec.minReplicas" \
  patch hpa/vap-web --type=merge -p '{"spec":{"scaleTargetRef":{"name":"other"}}}'
deny "hpa/vap-web: a label" "only spec.minReplicas" \
  patch hpa/vap-web --type=merge -p '{"metadata":{"labels":{"owned":"no"}}}'
"$KUBECTL" -n "$wns" delete hpa/vap-web --wait=false >/dev/null 2>&1 || true

# Evictions: allowed, but not with a shorter grace period. Needs a pod (kube-controller-manager
# and a node); skipped when none appears.
pod=""
for _ in $(seq 1 60); do
  pod=$("$KUBECTL" -n "$wns" get pods -l app=vap-web -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
  [[ -n $pod ]] && break
  sleep 1
done
if [[ -n $pod ]]; then
  evict() { printf '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"%s","namespace":"%s"}%s}' "$pod" "$wns" "$1"; }
  evict ',"deleteOptions":{"gracePeriodSeconds":0}' >"$tmp/evict0.json"
  evict '' >"$tmp/evict.json"
  deny "eviction with gracePeriodSeconds 0" "keep the pod's own termination grace period" \
    create --raw "/api/v1/namespaces/$wns/pods/$pod/eviction" -f "$tmp/evict0.json"
  admit "eviction of $pod" create --raw "/api/v1/namespaces/$wns/pods/$pod/eviction" -f "$tmp/evict.json"
else
  echo "  skipped   evictions: no pod of deployment/vap-web appeared within 60 s"
fi

# The policy binds the operator only: an administrator may still change anything.
if "$KUBECTL" -n "$wns" set image deployment/vap-web app=registry.k8s.io/pause:3.9 >/dev/null; then
  echo "  admitted  an administrator's image change (the policy binds only $sa)"
else
  bad "the policy refused an administrator's change"
fi
exit $fail
