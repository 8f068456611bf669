{{/* Full name of the release's objects. */}}
{{- define "tinykv-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels. */}}
{{- define "tinykv-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels. */}}
{{- define "tinykv-operator.labels" -}}
{{ include "tinykv-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* ServiceAccount name. */}}
{{- define "tinykv-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tinykv-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The namespaces the operator watches, comma-separated (WATCH_NAMESPACES):
watchNamespaces, else the release namespace; empty only when
rbac.clusterWide is set and no list is given (every namespace). The
replaced single-valued watchNamespace is refused rather than ignored.
*/}}
{{- define "tinykv-operator.watchNamespaces" -}}
{{- if .Values.watchNamespace -}}
{{- fail "watchNamespace was replaced by watchNamespaces (a list), e.g. --set 'watchNamespaces={tinykv}'" -}}
{{- end -}}
{{- $list := .Values.watchNamespaces | default list | uniq -}}
{{- if and (not $list) (not .Values.rbac.clusterWide) -}}
{{- $list = list .Release.Namespace -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}
