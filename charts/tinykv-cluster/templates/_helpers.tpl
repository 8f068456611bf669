{{/* Name of the TinyKVCluster. */}}
{{- define "tinykv-cluster.name" -}}
{{- default .Release.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}
