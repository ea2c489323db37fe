{{/* The release-scoped name of every object. */}}
{{- define "sessionbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sessionbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sessionbridge.labels" -}}
{{ include "sessionbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sessionbridge.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "sessionbridge.fullname" .)) -}}
{{- end -}}

{{/*
The sidecar container. Include it in your own Deployment's containers:

  containers:
    - name: my-backend
      ...
    {{- include "sessionbridge.sidecar" . | nindent 4 }}

and its volumes in the pod's volumes:

  volumes:
    {{- include "sessionbridge.volumes" . | nindent 4 }}

Your backend reaches it at 127.0.0.1:<grpc.port>.
*/}}
{{- define "sessionbridge.sidecar" -}}
- name: sessionbridge
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve", "--config", "/etc/sessionbridge/config/sessionbridge.toml"]
  {{- if eq .Values.store.kind "redis" }}
  env:
    - name: SESSIONBRIDGE_REDIS_URLS
      valueFrom:
        secretKeyRef:
          name: {{ required "store.redis.existingSecret is required with store.kind=redis" .Values.store.redis.existingSecret }}
          key: urls
  {{- end }}
  ports:
    - name: grpc
      containerPort: {{ .Values.grpc.port }}
    - name: health
      containerPort: {{ .Values.health.port }}
    {{- if .Values.metrics.enabled }}
    - name: metrics
      containerPort: {{ .Values.metrics.port }}
    {{- end }}
  # Readiness follows the store: NOT_SERVING while it does not answer and
  # while draining. Liveness asks the "liveness" health service, SERVING
  # while the process serves gRPC, so a store outage does not restart
  # healthy pods.
  readinessProbe:
    grpc:
      port: {{ .Values.health.port }}
    periodSeconds: 5
  # Opening the embedded store replays the log written since it was last
  # opened (measured: 2 to 3 s with ten million identities and nothing to
  # replay, 26 s when nine million were written since,
  # docs/performance.md): the startup probe waits periodSeconds x
  # failureThreshold before liveness counts.
  startupProbe:
    grpc:
      port: {{ .Values.health.port }}
      service: liveness
    periodSeconds: {{ .Values.startupProbe.periodSeconds }}
    failureThreshold: {{ .Values.startupProbe.failureThreshold }}
  livenessProbe:
    grpc:
      port: {{ .Values.health.port }}
      service: liveness
    periodSeconds: 10
    failureThreshold: 6
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: sessionbridge-config
      mountPath: /etc/sessionbridge/config
      readOnly: true
    - name: sessionbridge-keys
      mountPath: /etc/sessionbridge/keys
      readOnly: true
    {{- if .Values.auth.enabled }}
    - name: sessionbridge-auth
      mountPath: /etc/sessionbridge/auth
      readOnly: true
    {{- end }}
    - name: sessionbridge-data
      mountPath: /var/lib/sessionbridge
{{- end -}}

{{- define "sessionbridge.volumes" -}}
- name: sessionbridge-config
  configMap:
    name: {{ include "sessionbridge.fullname" . }}
- name: sessionbridge-keys
  secret:
    secretName: {{ required "keys.existingSecret is required: run `sessionbridge keygen --out keys.json` and `kubectl create secret generic sessionbridge-keys --from-file=keys.json`" .Values.keys.existingSecret }}
{{- if .Values.auth.enabled }}
- name: sessionbridge-auth
  secret:
    secretName: {{ include "sessionbridge.authSecret" . }}
{{- end }}
- name: sessionbridge-data
{{- if and .Values.store.persistence.enabled (eq .Values.mode "standalone") }}
  persistentVolumeClaim:
    claimName: {{ include "sessionbridge.fullname" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}
