"""Kafka client security from settings, in ONE place, for every client of the project.

The faust worker, the worker's own aiokafka readers (buffer and catalog), and the
kafka-python producer/consumer of ``replay``/``watch`` all call
:func:`security_kwargs`, so SASL (PLAIN, SCRAM-SHA-256/512) and TLS settings reach
every client or none. Each client library spells the same options differently:
faust takes a credentials object (``faust.SASLCredentials``/``faust.SSLCredentials``),
aiokafka an ``ssl.SSLContext``, kafka-python file paths.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any, Literal

from ..settings import Settings

Client = Literal["faust", "aiokafka", "kafka-python"]


class KafkaConfigError(ValueError):
    """Kafka security settings that cannot work (one-line message for the CLI)."""


def _check_files(settings: Settings) -> None:
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if path and not os.path.isfile(path):
            raise KafkaConfigError(f"DIALIN_{name.upper()}={path} is not a readable file")
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise KafkaConfigError("DIALIN_KAFKA_SSL_CERTFILE and DIALIN_KAFKA_SSL_KEYFILE go together")


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context: the given CA (else the system's) and an optional client cert."""
    _check_files(settings)
    try:
        ctx = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    except ssl.SSLError as exc:
        raise KafkaConfigError(f"cannot load the Kafka TLS files: {exc.reason or exc}") from None
    return ctx


def _sasl(settings: Settings) -> tuple[str, str, str]:
    if not settings.kafka_sasl_mechanism:
        raise KafkaConfigError(
            f"DIALIN_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "DIALIN_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
    if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
        raise KafkaConfigError("SASL needs DIALIN_KAFKA_SASL_USERNAME and DIALIN_KAFKA_SASL_PASSWORD")
    return (settings.kafka_sasl_mechanism, settings.kafka_sasl_username,
            settings.kafka_sasl_password.get_secret_value())


def security_kwargs(settings: Settings, client: Client) -> dict[str, Any]:
    """Keyword arguments carrying security for one client library.

    ``faust``: ``{"broker_credentials": ...}`` for ``faust.App``; ``aiokafka``: for
    ``AIOKafkaConsumer``/``AIOKafkaProducer``/admin; ``kafka-python``: for
    ``KafkaProducer``/``KafkaConsumer``. Raises :class:`KafkaConfigError` on settings
    that cannot work (a missing CA file, SASL without credentials).
    """
    protocol = settings.kafka_security_protocol
    use_tls = protocol in ("SSL", "SASL_SSL")
    use_sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    sasl = _sasl(settings) if use_sasl else None
    if client == "faust":
        import faust  # only the worker needs faust

        ctx = ssl_context(settings) if use_tls else None
        if sasl:
            mechanism, user, password = sasl
            return {"broker_credentials": faust.SASLCredentials(
                username=user, password=password, mechanism=mechanism, ssl_context=ctx)}
        return {"broker_credentials": faust.SSLCredentials(ctx)} if ctx else {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if sasl:
        out.update(sasl_mechanism=sasl[0], sasl_plain_username=sasl[1], sasl_plain_password=sasl[2])
    if use_tls:
        if client == "aiokafka":
            out["ssl_context"] = ssl_context(settings)
        elif client == "kafka-python":
            _check_files(settings)
            out.update(ssl_check_hostname=True, ssl_cafile=settings.kafka_ssl_cafile,
                       ssl_certfile=settings.kafka_ssl_certfile, ssl_keyfile=settings.kafka_ssl_keyfile)
        else:
            raise ValueError(f"unknown Kafka client {client!r}")
    return out


def check_tls(settings: Settings, timeout: float = 5.0) -> None:
    """Fail early, in one line, when the brokers' TLS certificate is not trusted.

    Kafka clients only say "unable to bootstrap" after their timeout when the handshake
    fails; one handshake with the same context here names the cause instead. An
    unreachable host is left to the client (it has its own retries and message).
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return
    ctx = ssl_context(settings)
    for hostport in (h.strip() for h in settings.kafka_bootstrap.split(",") if h.strip()):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as sock, \
                    ctx.wrap_socket(sock, server_hostname=host):
                return
        except ssl.SSLCertVerificationError as exc:
            raise KafkaConfigError(
                f"Kafka at {hostport}: TLS certificate not trusted ({exc.verify_message}); set "
                "DIALIN_KAFKA_SSL_CAFILE to the CA that signed the brokers' certificate") from None
        except ssl.SSLError as exc:
            raise KafkaConfigError(f"Kafka at {hostport}: TLS handshake failed ({exc.reason or exc}); "
                                   "is this a TLS listener?") from None
        except (OSError, ValueError):
            continue
