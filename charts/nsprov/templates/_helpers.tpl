{{/*
Names are fixed: nsprov's policy data names its service accounts
(system:serviceaccount:<release namespace>:nsprov and
system:serviceaccount:<argo.namespace>:nsprov-provisioner), and one nsprov
runs per cluster.
*/}}
{{- define "nsprov.name" -}}nsprov{{- end }}

{{/* Labels on every object. */}}
{{- define "nsprov.labels" -}}
app.kubernetes.io/name: nsprov
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels that select nsprov's pods. */}}
{{- define "nsprov.selectorLabels" -}}
app.kubernetes.io/name: nsprov
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* The webhook serving certificate's Secret. */}}
{{- define "nsprov.certSecret" -}}
{{- if .Values.certManager.enabled }}nsprov-webhook-cert{{ else }}{{ .Values.selfManaged.secretName }}{{ end }}
{{- end }}

{{/* The username the controller evaluates plans as. */}}
{{- define "nsprov.identity" -}}
system:serviceaccount:{{ .Release.Namespace }}:nsprov
{{- end }}

{{/*
A CEL expression that is true when the object named by the argument carries
an nsprov.io/ annotation or label. Mirrors admission.MatchExpression; the
chart tests compare the two.
*/}}
{{- define "nsprov.carries" -}}
(has({{ . }}.metadata.annotations) && {{ . }}.metadata.annotations.exists(k, k.startsWith('nsprov.io/'))) || (has({{ . }}.metadata.labels) && {{ . }}.metadata.labels.exists(k, k.startsWith('nsprov.io/')))
{{- end }}

{{/* A CEL list of string literals. */}}
{{- define "nsprov.celList" -}}
{{- $q := list }}{{ range . }}{{ $q = append $q (quote .) }}{{ end -}}
[{{ join ", " $q }}]
{{- end }}

{{/*
The match condition of both webhooks: the request concerns a namespace that
carries (or carried) nsprov.io/ metadata, or creates a namespace as a user
outside the exempt users and groups.
*/}}
{{- define "nsprov.matchExpression" -}}
{{ include "nsprov.carries" "object" }} || (oldObject != null && ({{ include "nsprov.carries" "oldObject" }})) || (request.operation == 'CREATE' && !(request.userInfo.username in {{ include "nsprov.celList" .Values.webhook.exemptUsers }}) && !(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in {{ include "nsprov.celList" .Values.webhook.exemptGroups }})))
{{- end }}

{{/*
The match conditions that keep a namespace from ever being frozen by nsprov:
an UPDATE of a namespace being deleted (deletionTimestamp set), and an UPDATE
that changes neither labels nor annotations (the only metadata nsprov's
policy reads; the garbage collector's and other controllers' finalizer
patches are such updates), never reach nsprov, so they succeed even while
nsprov is down or its policy has changed.
*/}}
{{- define "nsprov.notTerminating" -}}
request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)
{{- end }}
{{- define "nsprov.metadataChanges" -}}
request.operation != 'UPDATE' || (has(object.metadata.labels) ? object.metadata.labels : {}) != (has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}) || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})
{{- end }}

{{/* Namespaces the webhooks never see. */}}
{{- define "nsprov.exemptNamespaces" -}}
{{- $ns := concat .Values.webhook.exemptNamespaces (list .Release.Namespace .Values.argo.namespace) | uniq }}
{{- toJson $ns }}
{{- end }}

{{/* The parts both webhook configurations share. */}}
{{- define "nsprov.webhookCommon" -}}
rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [namespaces]
    scope: Cluster
failurePolicy: {{ .Values.webhook.failurePolicy }}
matchPolicy: Equivalent
sideEffects: NoneOnDryRun
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
admissionReviewVersions: [v1]
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "nsprov.exemptNamespaces" . }}
matchConditions:
  - name: nsprov-relevant
    expression: {{ include "nsprov.matchExpression" . | quote }}
  - name: nsprov-not-terminating
    expression: {{ include "nsprov.notTerminating" . | quote }}
  - name: nsprov-metadata-changes
    expression: {{ include "nsprov.metadataChanges" . | quote }}
{{- end }}

{{/* The webhook configurations' annotations. */}}
{{- define "nsprov.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/nsprov-webhook
{{- end }}
{{- end }}

{{/* The ConfigMap key of a policy file: "/" is not allowed in keys. */}}
{{- define "nsprov.policyKey" -}}
{{ replace "/" "." . }}
{{- end }}
