{{/*
Names, labels and the render-time validation of the aifactory chart.
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

{{/* Labels on every object. */}}
{{- define "aifactory.labels" -}}
helm.sh/chart: {{ include "aifactory.chart" . }}
{{ include "aifactory.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aifactory
{{- end }}

{{/* Labels that select the web pods; never change them (Deployment selectors are immutable). */}}
{{- define "aifactory.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aifactory.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: web
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

{{/* Lowest number of replicas that will run: replicaCount, or autoscaling.minReplicas under the HPA. */}}
{{- define "aifactory.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/* Highest number of replicas that may run: replicaCount, or autoscaling.maxReplicas under the HPA. */}}
{{- define "aifactory.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.maxReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
================================ Render-time refusals ================================
Each aifactory.validate.* template returns one message (or nothing). aifactory.validate gathers them
all and fails once, so an operator fixes every problem in one pass. Every message is one line starting
with a stable [id]; docs/chart-refusals.md lists them and the validator reports the same ids.
*/}}

{{- define "aifactory.validate.redisSourceMissing" -}}
{{- if and .Values.redis.enabled (not .Values.redis.url) (not .Values.redis.externalSecretName) -}}
[redis-source-missing] redis.enabled=true but neither redis.externalSecretName nor redis.url is set. Create the Secret with `kubectl create secret generic aifactory-redis --from-literal=REDIS_URL='redis://:<password>@redis.aifactory.svc:6379/0' --namespace {{ .Release.Namespace }}` and set redis.externalSecretName=aifactory-redis (or set redis.url for dev only, or redis.enabled=false).
{{- end }}
{{- end }}

{{- define "aifactory.validate.redisSourceAmbiguous" -}}
{{- if and .Values.redis.enabled .Values.redis.url .Values.redis.externalSecretName -}}
[redis-source-ambiguous] redis.url and redis.externalSecretName are both set, so REDIS_URL would be ambiguous. Remove redis.url to use the Secret {{ .Values.redis.externalSecretName | quote }} (the production path), or remove redis.externalSecretName to use the inline dev-only URL.
{{- end }}
{{- end }}

{{/* Checked here rather than by a schema pattern: schema errors echo the value, and a URL may hold a password. */}}
{{- define "aifactory.validate.redisUrlInvalid" -}}
{{- if and .Values.redis.enabled .Values.redis.url (not (regexMatch "^(rediss?|unix|rediss?\\+sentinel|rediss?\\+cluster)://\\S+$" (toString .Values.redis.url))) -}}
[redis-url-invalid] redis.url is not a Redis URL: it must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster:// and contain no spaces (the value is not shown because it may contain a password). Fix redis.url, or better, put the URL in a Secret and set redis.externalSecretName.
{{- end }}
{{- end }}

{{- define "aifactory.validate.hpaMinAboveMax" -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) -}}
[hpa-min-above-max] autoscaling.minReplicas ({{ .Values.autoscaling.minReplicas }}) is greater than autoscaling.maxReplicas ({{ .Values.autoscaling.maxReplicas }}). Lower autoscaling.minReplicas or raise autoscaling.maxReplicas.
{{- end }}
{{- end }}

{{- define "aifactory.validate.extraEnvReserved" -}}
{{- $reserved := list "REDIS_URL" "REDIS_CHANNEL" "AIFACTORY_AUTH_SECRET" "PORT" "LOG_LEVEL" }}
{{- $clashes := list }}
{{- range .Values.extraEnv }}
{{- if has .name $reserved }}{{ $clashes = append $clashes .name }}{{ end }}
{{- end }}
{{- if $clashes -}}
[extra-env-reserved] extraEnv sets {{ $clashes | uniq | join ", " }}, which the chart manages itself. Remove it from extraEnv and use redis.externalSecretName / redis.url / redis.channel / auth.existingSecret / server.logLevel instead.
{{- end }}
{{- end }}

{{/* Gather every refusal; fail once with all of them, one per line. */}}
{{- define "aifactory.validate" -}}
{{- $messages := list }}
{{- range $check := list "redisSourceMissing" "redisSourceAmbiguous" "redisUrlInvalid" "hpaMinAboveMax" "extraEnvReserved" }}
{{- $msg := include (printf "aifactory.validate.%s" $check) $ | trim }}
{{- if $msg }}{{ $messages = append $messages $msg }}{{ end }}
{{- end }}
{{- if $messages }}
{{- fail (printf "\nvalues refused (fix all of these, then retry):\n%s" (join "\n" $messages)) }}
{{- end }}
{{- end }}
