"""TLS credentials for the server and its clients, with errors that name the file at fault.

grpc reads PEM bytes, and a wrong or missing file otherwise surfaces late and vaguely (a failed
handshake, a server that will not bind). Here a missing, unreadable or non-PEM file fails at
startup with its path in the message; file contents never appear in a message.
"""

from __future__ import annotations

from pathlib import Path

import grpc

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"


def _read(path: Path | str, what: str, mark: bytes) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"TLS {what} not found: {path}") from exc
    except IsADirectoryError as exc:
        raise IsADirectoryError(f"TLS {what} is a directory, not a file: {path}") from exc
    except PermissionError as exc:
        raise PermissionError(f"TLS {what} is not readable (permission denied): {path}") from exc
    if mark not in data:
        raise ValueError(f"TLS {what} is not PEM (no '{mark.decode()}' block): {path}")
    return data


def server_credentials(
    cert_file: Path | str, key_file: Path | str, client_ca_file: Path | str | None = None
) -> grpc.ServerCredentials:
    """Server TLS; with ``client_ca_file``, mutual TLS: clients must present a cert it signed."""
    cert = _read(cert_file, "server certificate", _CERT_MARK)
    key = _read(key_file, "server private key", _KEY_MARK)
    client_ca = _read(client_ca_file, "client CA", _CERT_MARK) if client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def channel_credentials(
    ca_file: Path | str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
) -> grpc.ChannelCredentials:
    """Client TLS trusting ``ca_file`` (None: the system roots); cert and key for mutual TLS."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs its private key, and the other way round")
    ca = _read(ca_file, "CA certificate", _CERT_MARK) if ca_file else None
    cert = _read(cert_file, "client certificate", _CERT_MARK) if cert_file else None
    key = _read(key_file, "client private key", _KEY_MARK) if key_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
