{{/* The name of every object of the release. */}}
{{- define "failover-agent.fullname" -}}
{{- if eq .Release.Name .Chart.Name -}}
{{- .Chart.Name -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "failover-agent.labels" -}}
app.kubernetes.io/name: failover-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: failover
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The selector of the agent's pod. */}}
{{- define "failover-agent.selector" -}}
app.kubernetes.io/name: failover-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The image reference: repository@digest, else repository:tag (appVersion). */}}
{{- define "failover-agent.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The cluster name, required and a DNS label. */}}
{{- define "failover-agent.cluster" -}}
{{- $c := required "cluster is required: this cluster's name (--set cluster=east)" .Values.cluster -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $c) -}}
{{- fail (printf "cluster %q must be a DNS label (lower-case letters, digits, '-')" $c) -}}
{{- end -}}
{{- $c -}}
{{- end -}}
