{{- define "portico.tag" -}}{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "portico.labels" -}}
app.kubernetes.io/name: portico
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "portico.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- /* The ServiceAccount annotation that gives the operator cloud credentials on each cloud. */ -}}
{{- define "portico.identityAnnotation" -}}
{{- get (dict "aws" "eks.amazonaws.com/role-arn" "gcp" "iam.gke.io/gcp-service-account" "azure" "azure.workload.identity/client-id") .Values.provider -}}
{{- end -}}
{{- define "portico.checkIdentity" -}}
{{- $key := include "portico.identityAnnotation" . -}}
{{- if and $key (eq .Values.cloudIdentity "workload") (not (get .Values.serviceAccount.annotations $key)) -}}
{{- fail (printf "provider %s needs a cloud identity: set serviceAccount.annotations.%s (workload identity), or cloudIdentity=external when credentials are set up outside the chart (e.g. EKS Pod Identity)" .Values.provider (replace "." "\\." $key)) -}}
{{- end -}}
{{- end -}}
