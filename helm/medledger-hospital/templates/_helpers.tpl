{{- define "medledger-hospital.labels" -}}
app.kubernetes.io/part-of: medledger
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
medledger.io/member: {{ .Values.memberName }}
{{- end -}}
