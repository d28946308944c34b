{{/* Names and labels shared by every template. */}}

{{- define "sr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sr.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Every object's labels; each adds its component's selector labels (name, instance). */}}
{{- define "sr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: jobshop-rollout
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* --- the operator --- */}}

{{- define "sr.operator.fullname" -}}
{{- printf "%s-operator" (include "sr.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sr.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sr.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "sr.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaces a namespace-scoped operator watches: the list, else the release's. */}}
{{- define "sr.operator.namespaces" -}}
{{- $namespaces := .Values.operator.watch.namespaces | default (list .Release.Namespace) -}}
{{- toJson (uniq $namespaces) -}}
{{- end -}}

{{- define "sr.operator.leaderElection" -}}
{{- if or .Values.operator.leaderElection.enabled (gt (int .Values.operator.replicas) 1) -}}
true
{{- end -}}
{{- end -}}

{{- define "sr.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (.Values.operator.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* --- the scheduler --- */}}

{{- define "sr.scheduler.selectorLabels" -}}
app.kubernetes.io/name: {{ .Values.scheduler.name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: scheduler
{{- end -}}

{{/* The stable pods: the candidate's carry track canary or shadow instead (the operator's). */}}
{{- define "sr.scheduler.stableLabels" -}}
{{ include "sr.scheduler.selectorLabels" . }}
track: stable
{{- end -}}

{{- define "sr.scheduler.canaryService" -}}
{{- .Values.scheduler.canaryService | default (printf "%s-canary" .Values.scheduler.name) -}}
{{- end -}}

{{- define "sr.scheduler.image" -}}
{{- printf "%s:%s" .Values.scheduler.image.repository (.Values.scheduler.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "sr.scheduler.routeName" -}}
{{- .Values.scheduler.route.name | default .Values.scheduler.name -}}
{{- end -}}

{{/* Restricted pod security: what every container of the chart runs with. */}}
{{- define "sr.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sr.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* --- sign-offs --- */}}

{{- define "sr.signOffs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: signoffs
{{- end -}}
