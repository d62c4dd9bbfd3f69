{{/* The release's full name, at most 63 characters. */}}
{{- define "medledger-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Pod selector. app.kubernetes.io/name must stay medledger-operator: the ledger nodes'
     NetworkPolicy admits the operator's status polls by this label. */}}
{{- define "medledger-operator.selectorLabels" -}}
app.kubernetes.io/name: medledger-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "medledger-operator.labels" -}}
{{ include "medledger-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: medledger
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "medledger-operator.serviceAccountName" -}}
{{- default (include "medledger-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "medledger-operator.leaderElect" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- end -}}
