{{/* Chart name, truncated for DNS. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; also the StatefulSet's, so pods are NAME-0, NAME-1 … */}}
{{- define "weir.fullname" -}}
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

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "weir.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret whose keys become environment variables, if any. */}}
{{- define "weir.envSecretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.env }}
{{- printf "%s-env" (include "weir.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding a GCS service-account key.json, if any. */}}
{{- define "weir.gcsSecretName" -}}
{{- if .Values.secrets.existingGcsSecret }}
{{- .Values.secrets.existingGcsSecret }}
{{- else if .Values.secrets.gcsServiceAccountJson }}
{{- printf "%s-gcs" (include "weir.fullname" .) }}
{{- end }}
{{- end }}

{{/*
One value as TOML: strings as JSON-quoted strings (valid TOML basic
strings), whole numbers without exponent, lists as arrays, maps as inline
tables.
*/}}
{{- define "weir.tomlValue" -}}
{{- if kindIs "map" . -}}
{ {{- $first := true }}{{ range $k, $v := . }}{{ if not $first }}, {{ end }}{{ $first = false }}{{ $k | toJson }} = {{ include "weir.tomlValue" $v }}{{ end -}} }
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "weir.tomlValue" $v }}{{ end }}]
{{- else if kindIs "string" . -}}
{{ . | toJson }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{ int64 . }}
{{- else -}}
{{ . }}
{{- end -}}
{{- end }}

{{/* `key = value` lines of a map. */}}
{{- define "weir.tomlKeys" -}}
{{- range $k, $v := . }}
{{ $k | toJson }} = {{ include "weir.tomlValue" $v }}
{{- end }}
{{- end }}

{{/* outbox.shutdown_timeout: the grace period less time to sync and exit. */}}
{{- define "weir.shutdownTimeout" -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- printf "%ds" (max 5 (sub $grace 15)) -}}
{{- end }}

{{/* weir.toml */}}
{{- define "weir.config" -}}
# Rendered by the weir Helm chart from .Values.config.
node_id = "${POD_NAME}"
data_dir = "/var/lib/weir"
unmatched = {{ .Values.config.unmatched | toJson }}

[forward]
listen = "0.0.0.0:{{ .Values.service.port }}"
{{- include "weir.tomlKeys" (omit .Values.config.forward "listen") }}

[wal]
{{- include "weir.tomlKeys" .Values.config.wal }}

[roll]
{{- include "weir.tomlKeys" .Values.config.roll }}

[outbox]
{{- include "weir.tomlKeys" (merge (dict) .Values.config.outbox (dict "shutdown_timeout" (include "weir.shutdownTimeout" .))) }}

[metrics]
listen = "0.0.0.0:{{ .Values.metrics.port }}"
{{- include "weir.tomlKeys" (omit .Values.config.metrics "listen") }}
{{- range .Values.config.routes }}

[[route]]
{{- include "weir.tomlKeys" . }}
{{- end }}
{{- range $name, $sink := .Values.config.sinks }}

[sinks.{{ $name | toJson }}]
{{- include "weir.tomlKeys" $sink }}
{{- else }}

# No sinks configured: files stay on the pod's volume.
[sinks.local]
type = "local"
path = "/var/lib/weir/files"
{{- end }}
{{- with .Values.config.extra }}

{{ . }}
{{- end }}
{{- end }}
