{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name when it already contains the chart
name, else "<release>-<chart>". Truncated to 63 characters, the DNS label limit of some name fields.
*/}}
{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>", for the helm.sh/chart label. */}}
{{- define "modeldeploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ include "modeldeploy.chart" . }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
{{- end }}

{{/* The operator pods' identity: the Deployment's and the metrics Service's selector. Never add to it. */}}
{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag (appVersion by default). */}}
{{- define "modeldeploy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Lease the replicas compete for. */}}
{{- define "modeldeploy.leaseName" -}}
{{- default (include "modeldeploy.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The namespaces the operator watches, as a list ("" alone means every namespace), after checking that the watch
values make sense together: a wrong combination fails the install with a message instead of a silent default.
*/}}
{{- define "modeldeploy.watchedNamespaces" -}}
{{- $scope := .Values.watch.scope }}
{{- if eq $scope "cluster" }}
{{- list "" | toJson }}
{{- else if eq $scope "release" }}
{{- list .Release.Namespace | toJson }}
{{- else if eq $scope "namespaces" }}
{{- if not .Values.watch.namespaces }}
{{- fail "watch.namespaces must list at least one namespace when watch.scope is namespaces" }}
{{- end }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- fail (printf "watch.scope must be cluster, namespaces or release, not %q" $scope) }}
{{- end }}
{{- end }}

{{/*
The operator's rules in a watched namespace (or cluster-wide). kopf and the operator's caches list then watch what
they serve; the operator server-side applies its children and merge-patches the status. The gets: a
ModelDeployment read live before a missing child is re-created outside its own handler (is it still alive?), and
the object that holds a child's name when the child's create finds it taken (ours, or someone else's?).
*/}}
{{- define "modeldeploy.operatorRules" -}}
- apiGroups: ["serving.modeldeploy.dev"]
  resources: ["modeldeployments"]
  # No patch: the operator writes only the status. get: before re-creating a missing child on a trigger other than
  # a spec change, the operator reads that the owner still exists (no child for a dead uid).
  verbs: ["get", "list", "watch"]
- apiGroups: ["serving.modeldeploy.dev"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
- apiGroups: ["serving.modeldeploy.dev"]
  resources: ["modeldeployments/finalizers"]
  # The children's owner references set blockOwnerDeletion, which clusters with the
  # OwnerReferencesPermissionEnforcement admission plugin allow only to who may update the owner's finalizers.
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  # Server-side apply is a patch, and also a create when the object is missing. get: when a child's create finds
  # its name taken, the operator reads whose object it is (ChildConflict).
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  # An automatic rollback reads the last good pod template from the ReplicaSet that ran it.
  verbs: ["list"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  # Every event is posted as a new one; none is patched.
  verbs: ["create"]
{{- end }}
