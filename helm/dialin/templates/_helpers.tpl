{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "dialin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name used for every object. */}}
{{- define "dialin.fullname" -}}
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

{{- define "dialin.vllmName" -}}
{{- printf "%s-vllm" (include "dialin.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dialin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dialin
{{- end }}

{{/* Selector labels of the worker pods (component=worker). */}}
{{- define "dialin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dialin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "dialin.vllmSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dialin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: vllm
{{- end }}

{{- define "dialin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dialin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dialin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The LLM base URL: explicit llm.url, else the chart's vLLM Service, else empty. */}}
{{- define "dialin.llmUrl" -}}
{{- if .Values.llm.url }}
{{- .Values.llm.url }}
{{- else if .Values.vllm.enabled }}
{{- printf "http://%s:%d/v1" (include "dialin.vllmName" .) (int .Values.vllm.port) }}
{{- end }}
{{- end }}

{{- define "dialin.llmModel" -}}
{{- if .Values.llm.model }}
{{- .Values.llm.model }}
{{- else if .Values.vllm.enabled }}
{{- .Values.vllm.model }}
{{- end }}
{{- end }}

{{/*
Fail early on settings that cannot work together, with one clear line each.
*/}}
{{- define "dialin.validate" -}}
{{- $k := .Values.kafka }}
{{- $protocols := list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL" }}
{{- if not (has $k.securityProtocol $protocols) }}
{{- fail (printf "kafka.securityProtocol must be one of %s, got %q" (join ", " $protocols) $k.securityProtocol) }}
{{- end }}
{{- if $k.sasl.mechanism }}
{{- if not (has $k.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) }}
{{- fail (printf "kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q" $k.sasl.mechanism) }}
{{- end }}
{{- if not (hasPrefix "SASL_" $k.securityProtocol) }}
{{- fail "kafka.sasl.mechanism needs kafka.securityProtocol SASL_PLAINTEXT or SASL_SSL" }}
{{- end }}
{{- if not $k.sasl.existingSecret }}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.existingSecret (a Secret with the username and password)" }}
{{- end }}
{{- else if hasPrefix "SASL_" $k.securityProtocol }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism" $k.securityProtocol) }}
{{- end }}
{{- if and (or $k.tls.certKey $k.tls.keyKey) (not (and $k.tls.certKey $k.tls.keyKey)) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey must be set together (mutual TLS)" }}
{{- end }}
{{- if and $k.tls.existingSecret (not (has $k.securityProtocol (list "SSL" "SASL_SSL"))) }}
{{- fail "kafka.tls.existingSecret needs kafka.securityProtocol SSL or SASL_SSL" }}
{{- end }}
{{- end }}

{{/*
Environment shared by the worker and the review page, so both read the same topics
through the same Kafka connection. Each helper renders a list of env entries (or
nothing); include it with `trim | nindent`.
*/}}
{{/* worker.settings as DIALIN_<KEY>; a null value is left out (the code default). */}}
{{- define "dialin.settingsEnv" -}}
{{- range $key, $value := .Values.worker.settings }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "DIALIN_%s" (upper $key) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Bootstrap servers, protocol, SASL credentials (from their Secret), TLS file paths. */}}
{{- define "dialin.kafkaEnv" -}}
{{- $k := .Values.kafka }}
{{- if $k.bootstrapSecret.name }}
- name: DIALIN_KAFKA_BOOTSTRAP
  valueFrom:
    secretKeyRef:
      name: {{ $k.bootstrapSecret.name }}
      key: {{ $k.bootstrapSecret.key }}
{{- else }}
- name: DIALIN_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap or kafka.bootstrapSecret.name is required" $k.bootstrap | quote }}
{{- end }}
- name: DIALIN_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if $k.sasl.mechanism }}
- name: DIALIN_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: DIALIN_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.usernameKey }}
- name: DIALIN_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.passwordKey }}
{{- end }}
{{- if $k.tls.existingSecret }}
- name: DIALIN_KAFKA_SSL_CAFILE
  value: {{ printf "%s/%s" $k.tls.mountPath $k.tls.caKey | quote }}
{{- if $k.tls.certKey }}
- name: DIALIN_KAFKA_SSL_CERTFILE
  value: {{ printf "%s/%s" $k.tls.mountPath $k.tls.certKey | quote }}
- name: DIALIN_KAFKA_SSL_KEYFILE
  value: {{ printf "%s/%s" $k.tls.mountPath $k.tls.keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Kafka TLS Secret: its volume mount and its volume (nothing without TLS). */}}
{{- define "dialin.kafkaTlsMount" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ .Values.kafka.tls.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "dialin.kafkaTlsVolume" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "dialin.reviewName" -}}
{{- printf "%s-review" (include "dialin.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the review page's pods (component=review: never the worker's). */}}
{{- define "dialin.reviewSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dialin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: review
{{- end }}
