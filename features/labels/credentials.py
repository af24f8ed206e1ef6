"""The one place a Kafka connection becomes faust/aiokafka broker credentials, for the label
worker (secrets revealed here only; librdkafka's is ``KafkaConnection.to_librdkafka``)."""

from __future__ import annotations

import ssl
from typing import Any

from fraudstream.features.exceptions import ConfigError
from fraudstream.features.kafka import KafkaConnection


def broker_urls(conn: KafkaConnection) -> list[str]:
    """faust broker URLs for the bootstrap list."""
    return [f"kafka://{h}" for h in conn.hosts()]


def broker_credentials(conn: KafkaConnection) -> Any:
    """faust credentials for the security protocol, or None for PLAINTEXT.

    faust derives aiokafka's ``security_protocol`` from the credentials' type:
    ``SSLCredentials`` → SSL, ``SASLCredentials`` → SASL_PLAINTEXT, or SASL_SSL with a context.
    """
    import faust

    context = ssl_context(conn) if conn.uses_ssl else None
    if conn.security_protocol == "PLAINTEXT":
        return None
    if conn.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    password = conn.sasl_password
    return faust.SASLCredentials(
        username=conn.sasl_username,
        password=None if password is None else password.get_secret_value(),
        mechanism=conn.sasl_mechanism,
        ssl_context=context,
    )


def ssl_context(conn: KafkaConnection) -> ssl.SSLContext:
    """A client TLS context: the CA bundle (or the system's) and the optional client cert."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=None if conn.ssl_ca_location is None else str(conn.ssl_ca_location),
        )
        if conn.ssl_certificate_location is not None:
            key_password = conn.ssl_key_password
            context.load_cert_chain(
                str(conn.ssl_certificate_location),
                None if conn.ssl_key_location is None else str(conn.ssl_key_location),
                password=None if key_password is None else key_password.get_secret_value(),
            )
    except (OSError, ssl.SSLError) as exc:
        msg = (
            f"cannot load the TLS files (ssl_ca_location / ssl_certificate_location / "
            f"ssl_key_location): {type(exc).__name__}: {exc.strerror or exc}"
        )
        raise ConfigError(msg) from None
    return context
