"""The monitoring host's TLS certificate and web password, made and kept on the controller.

Prometheus' and Alertmanager's web interfaces answer only over TLS and only to a user with the
password (their --web.config.file). Everything secret is made here, on the controller, in the
municipality's monitoring secrets directory (0700, files 0600), and only what the host needs
is copied to it: its certificate and key, the CA certificate, the password's bcrypt hash (for
the web config) and the password itself (Prometheus needs it to send alerts to Alertmanager).

Made once and kept: a second run changes nothing. The server certificate is made again when
the host's addresses change or when it expires within 30 days; the CA and the password stay.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kastro.controller.secrets import write_secret

USER = "kastro"
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_DAYS = 30
BCRYPT_COST = 10  # checked once per connection by the exporter toolkit, which caches it


class CredentialsError(ValueError):
    """A host name or address that cannot go into a certificate; the message names it."""


def _check(
    host: str, addresses: Iterable[str]
) -> tuple[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    if not _HOST.fullmatch(host):
        raise CredentialsError(
            f"host {host!r} is not a host name (lower-case letters, digits and '-')"
        )
    checked = []
    for text in addresses:
        try:
            checked.append(ipaddress.ip_address(text))
        except ValueError:
            raise CredentialsError(f"address {text!r} is not an IP address") from None
    if not checked:
        raise CredentialsError(f"host {host!r} has no management address for its certificate")
    return host, checked


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialsError(f"{path} is not an EC key; remove it to have a new one made")
    return key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ensure_ca(
    directory: Path, domain: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    if key_path.exists() and cert_path.exists():
        return _load_key(key_path), x509.load_pem_x509_certificate(cert_path.read_bytes()), False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Kastro monitoring CA {domain}")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_secret(key_path, _key_bytes(key))
    write_secret(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, True


def _names(host: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> set[str]:
    return {f"DNS:{host}", *(f"IP:{a}" for a in addresses)}


def _server_current(path: Path, ca: x509.Certificate, wanted: set[str]) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.issuer != ca.subject:
        return False
    if cert.not_valid_after_utc - _now() < datetime.timedelta(days=RENEW_DAYS):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = {f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)}
    have |= {f"IP:{a}" for a in san.get_values_for_type(x509.IPAddress)}
    return have == wanted


def _issue(
    directory: Path,
    host: str,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
) -> None:
    """A certificate for `host` (CN `host`, these alternative names, this extended key usage)
    and its new key, signed by the CA, written to `directory` as HOST.crt and HOST.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(directory / f"{host}.key", _key_bytes(key))
    write_secret(directory / f"{host}.crt", cert.public_bytes(serialization.Encoding.PEM))


def _issue_server(
    directory: Path,
    host: str,
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
) -> None:
    san = [x509.DNSName(host), *(x509.IPAddress(a) for a in addresses)]
    _issue(directory, host, san, ExtendedKeyUsageOID.SERVER_AUTH, ca_key, ca)


def _client_current(path: Path, ca: x509.Certificate) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.issuer == ca.subject and cert.not_valid_after_utc - _now() >= datetime.timedelta(
        days=RENEW_DAYS
    )


def _issue_client(
    directory: Path, host: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> None:
    """A client certificate for `host` (CN and DNS name: the host's name), e.g. a sensor
    shipping its events to the collector, which admits only the names it knows."""
    clients = directory / "clients"
    clients.mkdir(mode=0o700, exist_ok=True)
    _issue(clients, host, [x509.DNSName(host)], ExtendedKeyUsageOID.CLIENT_AUTH, ca_key, ca)


def _ensure_password(directory: Path) -> bool:
    password_path, hash_path = directory / "web.password", directory / "web.bcrypt"
    if password_path.exists() and hash_path.exists():
        password = password_path.read_bytes().strip()
        try:
            if password and bcrypt.checkpw(password, hash_path.read_bytes().strip()):
                return False
        except ValueError:  # not a bcrypt hash: a damaged file, made again below
            pass
    password = secrets.token_urlsafe(24).encode()
    write_secret(password_path, password + b"\n")
    write_secret(hash_path, bcrypt.hashpw(password, bcrypt.gensalt(BCRYPT_COST)) + b"\n")
    return True


def ensure(
    directory: Path,
    domain: str,
    host: str,
    addresses: Iterable[str],
    clients: Iterable[str] = (),
) -> dict[str, object]:
    """Make what is missing in `directory`; report what changed (nothing secret). `clients`:
    hosts that get a client certificate (clients/HOST.crt and .key)."""
    host, checked = _check(host, addresses)
    clients = sorted(set(clients))
    for client in clients:
        if not _HOST.fullmatch(client):
            raise CredentialsError(
                f"client {client!r} is not a host name (lower-case letters, digits and '-')"
            )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    changed = []
    ca_key, ca, made = _ensure_ca(directory, domain)
    if made:
        changed.append("ca")
    if made or not _server_current(directory / f"{host}.crt", ca, _names(host, checked)):
        _issue_server(directory, host, checked, ca_key, ca)
        changed.append(f"{host}.crt")
    for client in clients:
        if made or not _client_current(directory / "clients" / f"{client}.crt", ca):
            _issue_client(directory, client, ca_key, ca)
            changed.append(f"clients/{client}.crt")
    if _ensure_password(directory):
        changed.append("web.password")
    return {"changed": bool(changed), "made": changed}


def ensure_json(
    directory: Path, domain: str, host: str, addresses: Iterable[str], clients: Iterable[str] = ()
) -> str:
    return json.dumps(ensure(directory, domain, host, addresses, clients))
