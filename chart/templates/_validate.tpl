{{/*
================================ Render-time refusals ================================
Values the schema cannot judge alone (they depend on each other) are refused here, before anything
renders. Each aifactory.validate.<check> template returns one message line, or nothing;
aifactory.validate gathers them all and fails once, so an operator fixes every problem in one pass.

How to add a refusal:
  1. Define "aifactory.validate.<camelCaseName>" below. It prints nothing when the values are fine, else
     ONE line: "[kebab-case-id] what is wrong (with the values involved). How to fix it." Never echo a
     value that may hold a secret (redis.url).
  2. Add <camelCaseName> to the list in "aifactory.validate" at the bottom of this file.
  3. Document the id in docs/chart-refusals.md, add a case to tests/chart/test_refusals.py, and add a
     validator rule with the same id to validator's CHART_RULES (tests/validator/test_parity.py then
     proves helm and aifactory-validate refuse the same values).
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
{{- $bad := list }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- $bad = append $bad (printf "autoscaling.minReplicas (%v) is greater than autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if .Values.tiers }}
{{- range (include "aifactory.tiers" . | fromJsonArray) }}
{{- $a := .values.autoscaling }}
{{- if and (hasKey (index $.Values.tiers .name | default dict) "autoscaling") (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- $bad = append $bad (printf "tiers.%s.autoscaling.minReplicas (%v) is greater than its maxReplicas (%v)" .name $a.minReplicas $a.maxReplicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $bad -}}
[hpa-min-above-max] {{ join "; " $bad }}. Lower autoscaling.minReplicas or raise autoscaling.maxReplicas.
{{- end }}
{{- end }}

{{/* Checks the top-level extraEnv and every tier's own: a tier must not override a Secret reference either. */}}
{{- define "aifactory.validate.extraEnvReserved" -}}
{{- $reserved := list "REDIS_URL" "REDIS_CHANNEL" "AIFACTORY_AUTH_SECRET" "PORT" "LOG_LEVEL" "AIFACTORY_HISTORY_SIZE" "AIFACTORY_HISTORY_TTL" }}
{{- $clashes := list }}
{{- $lists := list .Values.extraEnv }}
{{- range $_, $tier := (.Values.tiers | default dict) }}{{ if kindIs "map" $tier }}{{ $lists = append $lists $tier.extraEnv }}{{ end }}{{ end }}
{{- range $env := $lists }}
{{- range $env }}
{{- if has .name $reserved }}{{ $clashes = append $clashes .name }}{{ end }}
{{- end }}
{{- end }}
{{- if $clashes -}}
[extra-env-reserved] extraEnv sets {{ $clashes | uniq | join ", " }}, which the chart manages itself. Remove it from extraEnv (and tiers.<name>.extraEnv) and use redis.externalSecretName / redis.url / redis.channel / auth.existingSecret / server.logLevel instead.
{{- end }}
{{- end }}

{{- define "aifactory.validate.tierRouteUnknown" -}}
{{- $tiers := .Values.tiers | default dict }}
{{- $bad := list }}
{{- range .Values.tierRoutes }}{{ if not (hasKey $tiers (toString .tier)) }}{{ $bad = append $bad (printf "%s -> %s" .path (toString .tier)) }}{{ end }}{{ end }}
{{- if $bad -}}
[tier-route-unknown] tierRoutes sends {{ join ", " $bad }} to a tier that is not defined (tiers: {{ if $tiers }}{{ keys $tiers | sortAlpha | join ", " }}{{ else }}none{{ end }}), so those requests would reach no pod. Route each path to one of the keys of tiers, or add that tier.
{{- end }}
{{- end }}

{{- define "aifactory.validate.tierPathUnrouted" -}}
{{- $root := false }}
{{- range .Values.tierRoutes }}{{ if eq .path "/" }}{{ $root = true }}{{ end }}{{ end }}
{{- if and .Values.tiers (not $root) -}}
[tier-path-unrouted] tiers are set but no tierRoutes entry has path "/", so the portal, /api and the WebSocket paths not listed would be routed to no tier. Add {path: /, tier: <the interactive tier, e.g. ui>} to tierRoutes.
{{- end }}
{{- end }}

{{- define "aifactory.validate.tiersWithoutRedis" -}}
{{- if and .Values.tiers (not .Values.redis.enabled) -}}
[tiers-without-redis] tiers are set while redis.enabled=false: events fired on one tier's pods (e.g. task progress on agents) would never reach WebSocket clients on another tier (ui). Set redis.enabled=true and redis.externalSecretName=<Secret with key REDIS_URL>.
{{- end }}
{{- end }}

{{- define "aifactory.validate.tierNoReplicas" -}}
{{- $empty := list }}
{{- if .Values.tiers }}
{{- range (include "aifactory.tiers" . | fromJsonArray) }}
{{- if eq (int (include "aifactory.tierMaxReplicas" .values)) 0 }}{{ $empty = append $empty .name }}{{ end }}
{{- end }}
{{- end }}
{{- if $empty -}}
[tier-no-replicas] tier(s) {{ join ", " $empty }} would run no pod (replicaCount 0 and no HPA), so the paths routed to them would fail. Set tiers.<name>.replicaCount to 1 or more (or tiers.<name>.autoscaling.enabled=true), or remove the tier.
{{- end }}
{{- end }}

{{/* Gather every refusal; fail once with all of them, one per line. */}}
{{- define "aifactory.validate.terminalsHostWithoutRedis" -}}
{{- if and (eq (toString (.Values.terminals | default dict).mode) "host") (not .Values.redis.enabled) -}}
[terminals-host-without-redis] terminals.mode=host but redis.enabled=false: Redis is the directory that tells web pods which terminal host owns a terminal. Set redis.enabled=true with redis.externalSecretName, or terminals.mode=local.
{{- end }}
{{- end }}

{{- define "aifactory.validate" -}}
{{- $messages := list }}
{{- range $check := list "redisSourceMissing" "redisSourceAmbiguous" "redisUrlInvalid" "hpaMinAboveMax" "extraEnvReserved" "tierRouteUnknown" "tierPathUnrouted" "tiersWithoutRedis" "tierNoReplicas" "terminalsHostWithoutRedis" }}
{{- $msg := include (printf "aifactory.validate.%s" $check) $ | trim }}
{{- if $msg }}{{ $messages = append $messages $msg }}{{ end }}
{{- end }}
{{- if $messages }}
{{- fail (printf "\nvalues refused (fix all of these, then retry):\n%s" (join "\n" $messages)) }}
{{- end }}
{{- end }}
