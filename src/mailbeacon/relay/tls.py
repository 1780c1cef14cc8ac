"""The relay's TLS certificate: the operator's own, or a self-signed one made on first start.

A mail client warns once about a self-signed certificate and then trusts the one it was shown;
`serve` prints its SHA-256 fingerprint so that the user can check it is this one.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailbeacon.settings import Settings, SettingsError

log = logging.getLogger(__name__)

CERT_FILE = "smtp-cert.pem"
KEY_FILE = "smtp-key.pem"
# Apple Mail refuses a TLS server certificate valid for longer, even one the user trusts, and
# one without the server-auth usage or a subject alternative name (Apple, "Requirements for
# trusted certificates in iOS 13 and macOS 10.15", HT210176).
VALID_FOR = datetime.timedelta(days=825)


def certificate_files(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key to serve: ``--smtp-cert``/``--smtp-key``, or the self-signed pair
    in the data directory, made when missing or expired."""
    if settings.smtp_cert is not None and settings.smtp_key is not None:
        return settings.smtp_cert, settings.smtp_key
    cert, key = settings.data / CERT_FILE, settings.data / KEY_FILE
    if not (cert.is_file() and key.is_file()) or _expired(cert):
        _self_signed(cert, key, _names(settings))
        log.info("made a self-signed certificate for the SMTP relay: %s", cert)
    return cert, key


def server_context(settings: Settings) -> ssl.SSLContext:
    """What STARTTLS serves; a certificate or key that does not load refuses to start."""
    cert, key = certificate_files(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(f"the SMTP relay cannot use {cert} with the key {key}: {exc}") from exc
    return context


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate, as mail clients show it (``AB:CD:…``)."""
    digest = x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def _expired(cert: Path) -> bool:
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError:
        return True  # unreadable: made again, like a missing one
    return loaded.not_valid_after_utc <= datetime.datetime.now(datetime.UTC)


def _names(settings: Settings) -> list[x509.GeneralName]:
    """The names a client may reach the relay by: the tracking domain, this host, loopback,
    and the address it listens on."""
    hosts = [urlsplit(settings.public_url).hostname or "", socket.gethostname()]
    hosts += ["localhost", "127.0.0.1", "::1"]
    if settings.smtp_listen is not None:
        hosts.append(settings.smtp_listen[0])
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]") for h in hosts if h):
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            continue
        if not address.is_unspecified:  # 0.0.0.0 and :: are no one's address
            names.append(x509.IPAddress(address))
    return names


def _self_signed(cert: Path, key: Path, names: list[x509.GeneralName]) -> None:
    # RSA rather than ECDSA: every mail client takes it, old Outlooks included. No basic
    # constraints: with CA:TRUE Thunderbird (NSS) refuses it as a server's certificate, and
    # with CA:FALSE some stores will not take it as the trust anchor users make it.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    first = next((n.value for n in names if isinstance(n, x509.DNSName)), "mailbeacon")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, first),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailbeacon SMTP relay"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # a client whose clock is behind
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    _write(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Whole or not at all: a crash leaves the previous file, never half of a new one."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # a file left by a crash keeps the mode it was made with
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
