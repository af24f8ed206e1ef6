"""The one place label settings become faust/aiokafka broker credentials (secrets revealed
here only)."""

from __future__ import annotations

import ssl
from typing import Any

from features.exceptions import ConfigError
from features.labels.settings import LabelSettings


def broker_urls(settings: LabelSettings) -> list[str]:
    """faust broker URLs for the bootstrap list."""
    hosts = [h.strip() for h in settings.bootstrap_servers.split(",") if h.strip()]
    if not hosts:
        msg = "bootstrap_servers is empty: give host:port[,host:port...]"
        raise ConfigError(msg)
    return [f"kafka://{h}" for h in hosts]


def broker_credentials(settings: LabelSettings) -> Any:
    """faust credentials for the security protocol, or None for PLAINTEXT.

    faust derives aiokafka's ``security_protocol`` from the credentials' type:
    ``SSLCredentials`` → SSL, ``SASLCredentials`` → SASL_PLAINTEXT, or SASL_SSL with a context.
    """
    import faust

    context = ssl_context(settings) if settings.uses_ssl else None
    if settings.security_protocol == "PLAINTEXT":
        return None
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.sasl_password
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=None if password is None else password.get_secret_value(),
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )


def ssl_context(settings: LabelSettings) -> ssl.SSLContext:
    """A client TLS context: the CA bundle (or the system's) and the optional client cert."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=None if settings.ssl_ca_location is None else str(settings.ssl_ca_location),
        )
        if settings.ssl_certificate_location is not None:
            key_password = settings.ssl_key_password
            context.load_cert_chain(
                str(settings.ssl_certificate_location),
                None if settings.ssl_key_location is None else str(settings.ssl_key_location),
                password=None if key_password is None else key_password.get_secret_value(),
            )
    except (OSError, ssl.SSLError) as exc:
        msg = (
            f"cannot load the TLS files (ssl_ca_location / ssl_certificate_location / "
            f"ssl_key_location): {type(exc).__name__}: {exc.strerror or exc}"
        )
        raise ConfigError(msg) from None
    return context
