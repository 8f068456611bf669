{{/* Name of the TinyKVCluster. */}}
{{- define "tinykv-cluster.name" -}}
{{- default .Release.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the chart (the TinyKVCluster included). */}}
{{- define "tinykv-cluster.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tinykv
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
Labels the operator puts on the node pods of this cluster (its
selector_labels: app.kubernetes.io/name=tinykv and the cluster's name).
*/}}
{{- define "tinykv-cluster.podSelector" -}}
app.kubernetes.io/name: tinykv
app.kubernetes.io/instance: {{ include "tinykv-cluster.name" . }}
{{- end -}}

{{/*
The PromQL label matchers that pick this cluster's node series: its
namespace and its pods (<name>-<ordinal>), unless
monitoring.prometheusRule.selector is set.
*/}}
{{- define "tinykv-cluster.promSelector" -}}
{{- with .Values.monitoring.prometheusRule.selector -}}
{{- . -}}
{{- else -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "tinykv-cluster.name" . }}-[0-9]+"
{{- end -}}
{{- end -}}
