{{/* Names and labels, as `helm create` makes them. */}}
{{- define "pamgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pamgate.fullname" -}}
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

{{- define "pamgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pamgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pamgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pamgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pamgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pamgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The protocol listeners of config.listeners (everything but the API), as name=port pairs. */}}
{{- define "pamgate.listenerPorts" -}}
{{- range $name, $listener := .Values.config.listeners }}
{{- if ne $name "api" }}
- name: {{ $name | trunc 15 }}
  port: {{ required (printf "config.listeners.%s.port is required" $name) $listener.port }}
{{- end }}
{{- end }}
{{- end }}

{{/* SIGTERM → drain → ship → exit must fit in the grace period. */}}
{{- define "pamgate.terminationGracePeriodSeconds" -}}
{{- if .Values.terminationGracePeriodSeconds }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- $shutdown := .Values.config.shutdown | default dict }}
{{- $drain := $shutdown.drain_timeout_s | default 30 }}
{{- $ship := $shutdown.ship_timeout_s | default 10 }}
{{- add $drain $ship .Values.terminationGraceMarginSeconds }}
{{- end }}
{{- end }}

{{/* Refuses values that would make a broken or unsafe gateway, with the reason. */}}
{{- define "pamgate.validate" -}}
{{- $c := .Values.config }}
{{- if not (has .Values.workload (list "Deployment" "StatefulSet")) }}
{{- fail "workload must be Deployment or StatefulSet" }}
{{- end }}
{{- if not $c.listeners.api }}
{{- fail "config.listeners.api is required: the probes use /healthz and /readyz" }}
{{- end }}
{{- if not (has ($c.listeners.api.host | default "127.0.0.1") (list "0.0.0.0" "::")) }}
{{- fail "config.listeners.api.host must be 0.0.0.0 (or ::): the kubelet probes /healthz and /readyz on the pod's address" }}
{{- end }}
{{- if and $c.audit (not (hasPrefix "/var/lib/pamgate/" $c.audit.dir)) }}
{{- fail "config.audit.dir must be under /var/lib/pamgate/: the audit spool belongs on the persistent volume" }}
{{- end }}
{{- if and $c.store (eq ($c.store.type | default "") "embedded") (gt (int .Values.replicaCount) 1) }}
{{- fail "config.store.type embedded belongs to one process: with replicaCount > 1 use store.type postgres" }}
{{- end }}
{{- if and (eq .Values.workload "Deployment") .Values.persistence.enabled (gt (int .Values.replicaCount) 1) (has "ReadWriteOnce" .Values.persistence.accessModes) }}
{{- fail "a ReadWriteOnce volume cannot hold the spools of several replicas: use workload: StatefulSet (a volume per replica)" }}
{{- end }}
{{- end }}

{{/* The pod, shared by the Deployment and the StatefulSet. */}}
{{- define "pamgate.podTemplate" -}}
metadata:
  labels:
    {{- include "pamgate.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if .Values.rollOnConfigChange }}
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "pamgate.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ include "pamgate.terminationGracePeriodSeconds" . }}
  containers:
    - name: pamgate
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run", "--config", "/etc/pamgate/config/gateway.yaml"]
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      ports:
        {{- range (include "pamgate.listenerPorts" . | fromYamlArray) }}
        - name: {{ .name }}
          containerPort: {{ .port }}
          protocol: TCP
        {{- end }}
        - name: api
          containerPort: {{ .Values.config.listeners.api.port }}
          protocol: TCP
      env:
        - name: HOME
          value: /var/lib/pamgate
        - name: TMPDIR
          value: /var/lib/pamgate/tmp
        {{- range .Values.secretEnv }}
        - name: {{ .name }}
          valueFrom:
            secretKeyRef:
              name: {{ .secretName }}
              key: {{ .key }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        httpGet: { path: /healthz, port: api }
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: { path: /healthz, port: api }
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      # 503 while anything that decides or records is not ready, and from the moment a drain starts.
      readinessProbe:
        httpGet: { path: /readyz, port: api }
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/pamgate/config
          readOnly: true
        - name: state
          mountPath: /var/lib/pamgate
        - name: tmp
          mountPath: /tmp
        {{- range .Values.secretMounts }}
        - name: secret-{{ .name }}
          mountPath: /etc/pamgate/secrets/{{ .name }}
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "pamgate.fullname" . }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if eq .Values.workload "Deployment" }}
    - name: state
      {{- if .Values.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim | default (include "pamgate.fullname" .) }}
      {{- else }}
      # Not durable: audit records not yet shipped are lost with the pod (persistence.enabled: false).
      emptyDir: {}
      {{- end }}
    {{- else if not .Values.persistence.enabled }}
    - name: state
      emptyDir: {}
    {{- end }}
    {{- range .Values.secretMounts }}
    - name: secret-{{ .name }}
      secret:
        secretName: {{ .secretName }}
        defaultMode: 0440
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
