{{/*
Object names are fixed ("nsprov", whatever the release is called): one nsprov
runs per cluster, and its cluster-scoped objects (webhook configurations,
ClusterRoles, admission policies) carry those names, so a second release
anywhere in the cluster fails on them instead of two nsprovs deciding the same
namespaces. The release name only labels the objects
(app.kubernetes.io/instance); the release namespace and argo.namespace are
free: the identities the policy trusts follow them (nsprov.installData).
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

{{/* The username the provisioning steps run as. */}}
{{- define "nsprov.provisionerIdentity" -}}
system:serviceaccount:{{ .Values.argo.namespace }}:nsprov-provisioner
{{- end }}

{{/*
The policy's config/install.yaml for this release: the namespaces nsprov
runs in and its own identities. serve layers it over the bundle it serves
(--policy-overlay-dir), embedded or policy.files alike.
*/}}
{{- define "nsprov.installData" -}}
# Rendered by the nsprov chart from its release; layered over the policy
# bundle (serve --policy-overlay-dir). See policies/config/install.yaml.
install:
  namespace: {{ .Release.Namespace | quote }}
  argo_namespace: {{ .Values.argo.namespace | quote }}
  manager_users:
    - {{ include "nsprov.identity" . | quote }}
    - {{ include "nsprov.provisionerIdentity" . | quote }}
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
{{- /* Ignore until the post-install/post-upgrade hook (hooks/jobs.yaml) has seen a replica answer and set webhook.failurePolicy. */}}
failurePolicy: Ignore
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
annotations:
  # The failurePolicy the nsprov-activate hook sets once a replica answers.
  nsprov.io/failure-policy: {{ .Values.webhook.failurePolicy }}
  {{- if .Values.certManager.enabled }}
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/nsprov-webhook
  {{- end }}
{{- end }}

{{/* The ConfigMap key of a policy file: "/" is not allowed in keys. */}}
{{- define "nsprov.policyKey" -}}
{{ replace "/" "." . }}
{{- end }}

{{/*
A pod spec running `nsprov webhooks` with the arguments in .args, as the
service account .serviceAccount, under the restricted pod security profile
(the chart's hooks and helm test).
*/}}
{{- define "nsprov.webhooksPod" -}}
{{- $ := .root -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: true
restartPolicy: Never
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: nsprov
    image: "{{ $.Values.image.repository }}:{{ $.Values.image.tag | default $.Chart.AppVersion }}"
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    resources:
      requests:
        cpu: 10m
        memory: 32Mi
      limits:
        cpu: 200m
        memory: 128Mi
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      runAsNonRoot: true
      capabilities:
        drop: [ALL]
      seccompProfile:
        type: RuntimeDefault
{{- end }}
