{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "homeostat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "homeostat.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "homeostat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "homeostat.labels" -}}
helm.sh/chart: {{ include "homeostat.chart" . }}
{{ include "homeostat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: homeostat
{{- end }}

{{- define "homeostat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "homeostat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "homeostat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "homeostat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "homeostat.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: several replicas, or forced. */}}
{{- define "homeostat.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.force (gt (int .Values.leaderElection.shards) 1) }}true{{ end }}
{{- end }}

{{/* The leader Lease's name. */}}
{{- define "homeostat.leaseName" -}}
{{- default (printf "%s-leader" (include "homeostat.fullname" .)) .Values.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* PromQL matchers selecting the operator's own series. */}}
{{- define "homeostat.promSelector" -}}
{{- default (printf "job=%q,namespace=%q" (include "homeostat.fullname" .) .Release.Namespace) .Values.prometheusRule.selector }}
{{- end }}

{{/*
The operator's namespaced permissions, shared by the ClusterRole (all namespaces) and the
per-namespace Roles (watchNamespaces). One comment per rule: the call the operator makes.
*/}}
{{- define "homeostat.rules" -}}
# Watch RemediationPolicies (the controller's reflector: list + watch).
- apiGroups: ["homeostat.dev"]
  resources: ["remediationpolicies"]
  verbs: ["list", "watch"]
# Write RemediationPolicy status with server-side apply (field manager "homeostat").
- apiGroups: ["homeostat.dev"]
  resources: ["remediationpolicies/status"]
  verbs: ["patch"]
# Open incidents (create), keep every policy's incident history in a cache (list + watch) and
# prune that history by age and count (delete; see --remediation-history-limit and -max-age).
- apiGroups: ["homeostat.dev"]
  resources: ["remediations"]
  verbs: ["list", "watch", "create", "delete"]
# Advance an incident: server-side apply on the status subresource.
- apiGroups: ["homeostat.dev"]
  resources: ["remediations/status"]
  verbs: ["patch"]
# Cache the workloads (selector, replicas, labels, restartedAt: list + watch), re-read one before
# a RolloutRestart, which patches the kubectl.kubernetes.io/restartedAt pod-template annotation.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "patch"]
# Match pods to Deployments through their ReplicaSet owner (metadata-only list + watch).
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list", "watch"]
# Scale action: read and patch the scale subresource (bounded by spec scale.maxReplicas).
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "patch"]
# Cache the pods (owner, phase, start time: list + watch) and re-read one before evicting it.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# RestartPod action: evict through the Eviction API so PodDisruptionBudgets apply.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# ResizePod action: raise a pod's CPU or memory in place (the pods/resize subresource).
- apiGroups: [""]
  resources: ["pods/resize"]
  verbs: ["patch"]
# Scale through the owner of the replicas: cache the HPAs (list + watch), re-read one and raise
# its spec.minReplicas (get + patch; the admission policy lets nothing else change).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "patch"]
# KEDA ScaledObjects (list + watch once the CRD is served): a Scale on their targets is refused.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "watch"]
{{- with .Values.rbac.secretNames }}
# Prometheus credentials named by a policy's spec.prometheus.authSecretRef: get, and only these.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
# Events on policies, incidents and targets (kube-runtime Recorder: create, then patch a series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Events counted in the last 30 minutes by a counter `metric` whose series `sel` selects.
increase() misses a series' first value (prometheus-client creates a labelled series on its
first event), so series that appeared within the window count with their whole value.
*/}}
{{- define "homeostat.newEvents" -}}
{{- $m := printf "%s{%s}" .metric .sel -}}
(sum(increase({{ $m }}[30m])) > 0) or (sum({{ $m }} unless {{ $m }} offset 30m) > 0)
{{- end }}
