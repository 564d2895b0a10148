"""The streaming service (``dialin serve``): the faust worker and what it wires together.

``worker`` (the app and its start-up), ``ingest`` (validate, embed, match, assign or
buffer), ``encoder`` (the embedder in processes of its own), ``discovery`` (the
leader's runs and consolidations), ``buffer`` (compacted topics read back into memory),
``app`` (topics and the publisher), ``records`` (the events on every topic), ``health``
and ``metrics`` (what operators see), ``kafka_config`` (TLS and SASL).
"""
