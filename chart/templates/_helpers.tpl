{{/*
Names, labels and the tier model of the aifactory chart. The render-time refusals live in _validate.tpl,
the shared pod spec in _pod.tpl.
*/}}

{{/* Chart name, honouring nameOverride. */}}
{{- define "aifactory.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: fullnameOverride, else <release>-<chart> (or just <release> when it already contains the chart name). */}}
{{- define "aifactory.fullname" -}}
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

{{/* Name of an object derived from the full name with a suffix, kept within 63 characters. */}}
{{- define "aifactory.suffixed" -}}
{{- $full := include "aifactory.fullname" .root }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "aifactory.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object: commonLabels first, so the chart's own keys always win. */}}
{{- define "aifactory.labels" -}}
{{- include "aifactory.labelsFor" (dict "root" . "component" "web") }}
{{- end }}

{{/* Labels of an object belonging to one component (a tier name, or "web" without tiers). */}}
{{- define "aifactory.labelsFor" -}}
{{- $root := .root }}
{{- $own := dict
    "helm.sh/chart" (include "aifactory.chart" $root)
    "app.kubernetes.io/version" ($root.Chart.AppVersion | toString)
    "app.kubernetes.io/managed-by" $root.Release.Service
    "app.kubernetes.io/part-of" "aifactory" }}
{{- $own = merge $own (include "aifactory.selectorLabelsFor" . | fromYaml) }}
{{- merge $own (deepCopy ($root.Values.commonLabels | default dict)) | toYaml }}
{{- end }}

{{/* An `annotations:` block: commonAnnotations, then the object's own keys (which win); nothing if empty. */}}
{{- define "aifactory.annotations" -}}
{{- with merge (deepCopy (.own | default dict)) (deepCopy (.root.Values.commonAnnotations | default dict)) }}
{{- dict "annotations" . | toYaml }}
{{- end }}
{{- end }}

{{/* Labels that select the web pods; never change them (Deployment selectors are immutable). */}}
{{- define "aifactory.selectorLabels" -}}
{{- include "aifactory.selectorLabelsFor" (dict "root" . "component" "web") }}
{{- end }}

{{/* Selector labels of one component: "web" without tiers (unchanged since 1.0), else the tier name. */}}
{{- define "aifactory.selectorLabelsFor" -}}
app.kubernetes.io/name: {{ include "aifactory.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels every server pod of the release carries, whatever its tier (NetworkPolicy, ServiceMonitor). */}}
{{- define "aifactory.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "aifactory.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aifactory.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aifactory.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aifactory.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The pub/sub channel; null/deleted falls back to the documented default. */}}
{{- define "aifactory.redisChannel" -}}
{{- default "aifactory:events" .Values.redis.channel }}
{{- end }}

{{/* Secret holding REDIS_URL: the operator's Secret, or the chart-managed one for an inline dev URL. */}}
{{- define "aifactory.redisSecretName" -}}
{{- if .Values.redis.externalSecretName }}
{{- .Values.redis.externalSecretName }}
{{- else }}
{{- include "aifactory.suffixed" (dict "root" . "suffix" "redis") }}
{{- end }}
{{- end }}

{{/* True ("true") when the chart itself writes the Redis URL into a Secret (inline dev URL). */}}
{{- define "aifactory.redisManagedSecret" -}}
{{- if and .Values.redis.enabled .Values.redis.url (not .Values.redis.externalSecretName) }}true{{ end }}
{{- end }}

{{/* Secret holding AIFACTORY_AUTH_SECRET. */}}
{{- define "aifactory.authSecretName" -}}
{{- default (include "aifactory.suffixed" (dict "root" . "suffix" "auth")) .Values.auth.existingSecret }}
{{- end }}

{{/*
The chart-managed auth signing key: the value already in the cluster when the Secret exists (so an upgrade
never logs every user out), else a fresh random one. `helm template` has no cluster, so it always generates.
*/}}
{{- define "aifactory.authSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "aifactory.authSecretName" .) }}
{{- if and $existing $existing.data (index $existing.data "AIFACTORY_AUTH_SECRET") }}
{{- index $existing.data "AIFACTORY_AUTH_SECRET" }}
{{- else }}
{{- randAlphaNum 64 | b64enc }}
{{- end }}
{{- end }}

{{/* Lowest number of replicas of one tier's values: replicaCount, or autoscaling.minReplicas under its HPA. */}}
{{- define "aifactory.tierMinReplicas" -}}
{{- if .autoscaling.enabled }}{{ int .autoscaling.minReplicas }}{{ else }}{{ int .replicaCount }}{{ end }}
{{- end }}

{{- define "aifactory.tierMaxReplicas" -}}
{{- if .autoscaling.enabled }}{{ int .autoscaling.maxReplicas }}{{ else }}{{ int .replicaCount }}{{ end }}
{{- end }}

{{/* Lowest number of server replicas that will run in the release (summed over the tiers). */}}
{{- define "aifactory.minReplicas" -}}
{{- $sum := 0 }}
{{- range (include "aifactory.tiers" . | fromJsonArray) }}{{ $sum = add $sum (include "aifactory.tierMinReplicas" .values) }}{{ end }}
{{- $sum }}
{{- end }}

{{/* Highest number of server replicas that may run in the release (summed over the tiers). */}}
{{- define "aifactory.maxReplicas" -}}
{{- $sum := 0 }}
{{- range (include "aifactory.tiers" . | fromJsonArray) }}{{ $sum = add $sum (include "aifactory.tierMaxReplicas" .values) }}{{ end }}
{{- $sum }}
{{- end }}

{{/* The values a tier may override; every other value is shared by all tiers of the release. */}}
{{- define "aifactory.tierKeys" -}}
{{- list "replicaCount" "autoscaling" "podDisruptionBudget" "resources" "nodeSelector" "tolerations" "affinity" "topologySpread" "topologySpreadConstraints" "priorityClassName" "podAnnotations" "podLabels" "extraEnv" "envFrom" "strategy" "terminationGracePeriodSeconds" "runtimeClassName" | toJson }}
{{- end }}

{{/*
The Deployments the release renders, as a JSON list of {name, fullname, component, values}. Without
`tiers` there is one, named and labelled exactly as before tiers existed (component "web"). With tiers,
one per tier, named <fullname>-<tier>: a tier's values are the top-level ones with the tier's keys
replacing them (maps such as autoscaling merge one level deep, so `autoscaling: {enabled: true}` keeps
the top-level min/max). A tier's zero values (replicaCount: 0, enabled: false) are kept, not dropped.
*/}}
{{- define "aifactory.tiers" -}}
{{- $base := dict }}
{{- range $k := (include "aifactory.tierKeys" . | fromJsonArray) }}{{ $_ := set $base $k (index $.Values $k) }}{{ end }}
{{- $out := list }}
{{- if not .Values.tiers }}
{{- $out = append $out (dict "name" "" "fullname" (include "aifactory.fullname" .) "component" "web" "values" $base) }}
{{- else }}
{{- range $name, $tier := .Values.tiers }}
{{- $v := deepCopy $base }}
{{- range $k, $val := ($tier | default dict) }}
{{- if and (kindIs "map" $val) (kindIs "map" (index $v $k)) }}
{{- $m := deepCopy (index $v $k) }}
{{- range $k2, $v2 := $val }}{{ $_ := set $m $k2 $v2 }}{{ end }}
{{- $_ := set $v $k $m }}
{{- else }}
{{- $_ := set $v $k $val }}
{{- end }}
{{- end }}
{{- $out = append $out (dict "name" $name "fullname" (include "aifactory.suffixed" (dict "root" $ "suffix" $name)) "component" $name "values" $v) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
The Service an Ingress path goes to: without tiers the release Service; with tiers the Service of the
tier whose tierRoutes entry is the longest prefix of the path (Ingress Prefix matching).
*/}}
{{- define "aifactory.serviceForPath" -}}
{{- $root := .root }}
{{- if not $root.Values.tiers }}
{{- include "aifactory.fullname" $root }}
{{- else }}
{{- $best := "" }}{{ $tier := "" }}
{{- range $root.Values.tierRoutes }}
{{- $p := .path | trimSuffix "/" }}
{{- if and (or (eq $p "") (eq $p $.path) (hasPrefix (printf "%s/" $p) $.path)) (ge (len .path) (len $best)) }}
{{- $best = .path }}{{ $tier = .tier }}
{{- end }}
{{- end }}
{{- include "aifactory.suffixed" (dict "root" $root "suffix" $tier) }}
{{- end }}
{{- end }}

