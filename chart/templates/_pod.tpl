{{/*
The server pod spec, shared by every Deployment the release renders (one, or one per tier; grafana's
_pod.tpl does the same). Called with (dict "root" $ "tier" <one entry of aifactory.tiers>): `root` gives
the release-wide values (image, Redis, auth, security), `tier.values` the per-tier ones (resources,
scheduling, env). Nothing here depends on which tier it is beyond those values and the labels.
*/}}

{{/* Remove the uid/gid fields OpenShift assigns itself (restricted-v2 SCC), as bitnami's charts do. */}}
{{- define "aifactory.adaptSecurityContext" -}}
{{- $ctx := deepCopy (.context | default dict) }}
{{- $mode := dig "compatibility" "openshift" "adaptSecurityContext" "auto" (.root.Values.global | default dict) }}
{{- $openshift := or (eq $mode "force") (and (eq $mode "auto") (.root.Capabilities.APIVersions.Has "security.openshift.io/v1")) }}
{{- if $openshift }}
{{- $ctx = omit $ctx "runAsUser" "runAsGroup" "fsGroup" "seLinuxOptions" }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{/* One probe: the custom object when given, else the chart's httpGet with the operator's timings. */}}
{{- define "aifactory.probe" -}}
{{- if .custom -}}
{{- toYaml .custom }}
{{- else -}}
httpGet:
  path: {{ .path }}
  port: http
{{ toYaml (omit (.probe | default dict) "enabled") }}
{{- end }}
{{- end }}

{{- define "aifactory.podSpec" -}}
{{- $root := .root }}
{{- $v := .tier.values }}
{{- $values := $root.Values }}
{{- with $values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "aifactory.serviceAccountName" $root }}
automountServiceAccountToken: {{ $values.serviceAccount.automount | default false }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.runtimeClassName }}
{{- /* e.g. gvisor: the pods run under a sandboxed kernel (the companion v1.1 isolation feature). */}}
runtimeClassName: {{ . }}
{{- end }}
{{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- end }}
{{- with include "aifactory.adaptSecurityContext" (dict "root" $root "context" $values.podSecurityContext) | fromYaml }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else if $v.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: {{ default "kubernetes.io/hostname" $v.topologySpread.topologyKey }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "aifactory.selectorLabelsFor" (dict "root" $root "component" .tier.component) | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
{{- end }}
{{- with $values.initContainers }}
initContainers:
  {{- tpl (toYaml .) $root | nindent 2 }}
{{- end }}
containers:
  - name: server
    image: {{ include "aifactory.image" $root | quote }}
    imagePullPolicy: {{ $values.image.pullPolicy }}
    ports:
      - name: http
        containerPort: 8000
        protocol: TCP
    env:
      - name: PORT
        value: "8000"
      - name: LOG_LEVEL
        value: {{ $values.server.logLevel | quote }}
      {{- if eq (toString ($values.server.terminalSandbox | default "on")) "off" }}
      - name: AIFACTORY_TERMINAL_SANDBOX
        value: "off"
      {{- end }}
      {{- if $values.redis.enabled }}
      - name: REDIS_URL
        valueFrom:
          secretKeyRef:
            name: {{ include "aifactory.redisSecretName" $root }}
            key: REDIS_URL
      - name: REDIS_CHANNEL
        value: {{ include "aifactory.redisChannel" $root | quote }}
      {{- end }}
      - name: AIFACTORY_HISTORY_SIZE
        value: {{ $values.history.size | quote }}
      - name: AIFACTORY_HISTORY_TTL
        value: {{ $values.history.ttlSeconds | quote }}
      - name: AIFACTORY_AUTH_SECRET
        valueFrom:
          secretKeyRef:
            name: {{ include "aifactory.authSecretName" $root }}
            key: AIFACTORY_AUTH_SECRET
      {{- if eq (toString ($root.Values.terminals | default dict).mode) "host" }}
      - name: AIFACTORY_TERMINALS
        value: host
      {{- end }}
      {{- with $v.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- /* Neither probe touches Redis: pods start and serve without it (the spec's failure modes). */}}
    {{- range $kind, $path := dict "liveness" "/healthz" "readiness" "/readyz" "startup" "/healthz" }}
    {{- $probe := index $values (printf "%sProbe" $kind) | default dict }}
    {{- $custom := index $values (printf "custom%sProbe" (title $kind)) }}
    {{- if or $custom $probe.enabled }}
    {{ $kind }}Probe:
      {{- include "aifactory.probe" (dict "custom" $custom "probe" $probe "path" $path) | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- with $values.lifecycle }}
    lifecycle:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with include "aifactory.adaptSecurityContext" (dict "root" $root "context" $values.securityContext) | fromYaml }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with $values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  {{- with $values.sidecars }}
  {{- tpl (toYaml .) $root | nindent 2 }}
  {{- end }}
volumes:
  {{- /* The root filesystem is read-only; /tmp is the only writable path. */}}
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  {{- with $values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
