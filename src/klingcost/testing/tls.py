"""A self-signed certificate for ``klingcost fake-server --tls``.

Some clients refuse a base URL that is not https (the npm ``kling-api`` does). The fake makes a
certificate of its own for the names it answers on (localhost, 127.0.0.1, ::1, this machine's
host name, the address it listens on), valid for 30 days, and prints where it is, for a client
to trust (``NODE_EXTRA_CA_CERTS=<cert>`` for Node, ``REQUESTS_CA_BUNDLE`` for requests,
``verify=<cert>`` for httpx).

It is made with the ``cryptography`` package when that is installed, else with the machine's
``openssl req -x509``; klingcost depends on neither for anything else.
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Certificate", "TLSUnavailable", "certificate_hosts", "self_signed"]

_DAYS = 30
_SUBJECT = "klingcost fake Kling API"


class TLSUnavailable(RuntimeError):
    """Neither ``cryptography`` nor ``openssl`` is there to make a certificate."""


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path  # PEM: the file a client trusts
    key: Path  # PEM, unencrypted: for the server only

    @property
    def directory(self) -> Path:
        return self.cert.parent


def certificate_hosts(listen_host: str) -> list[str]:
    """The names and addresses the certificate covers: loopback, this host, ``listen_host``."""
    hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.append(listen_host)
    return list(dict.fromkeys(h for h in hosts if h))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def self_signed(directory: Path, hosts: list[str]) -> Certificate:
    """Write ``cert.pem`` and ``key.pem`` (mode 600) for ``hosts`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    made = Certificate(directory / "cert.pem", directory / "key.pem")
    if importlib.util.find_spec("cryptography") is None:
        _with_openssl(made, hosts)
    else:
        _with_cryptography(made, hosts)
    made.key.chmod(0o600)
    return made


def _with_openssl(made: Certificate, hosts: list[str]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSUnavailable(
            "--tls needs the cryptography package or the openssl command; install either"
        )
    names = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", str(_DAYS), "-subj", f"/CN={_SUBJECT}",
        "-keyout", str(made.key), "-out", str(made.cert),
        "-addext", f"subjectAltName={names}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TLSUnavailable(f"openssl could not make a certificate: {done.stderr.strip()}")


def _with_cryptography(made: Certificate, hosts: list[str]) -> None:
    # Imported here: an optional package (see the module docstring), typed as Any for mypy.
    from cryptography import x509  # type: ignore[import-not-found,unused-ignore]
    from cryptography.hazmat.primitives import (  # type: ignore[import-not-found,unused-ignore]
        hashes,
        serialization,
    )
    from cryptography.hazmat.primitives.asymmetric import (  # type: ignore[import-not-found,unused-ignore]
        ec,
    )
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found,unused-ignore]

    key: Any = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _SUBJECT)])
    alt = [x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts]
    now = datetime.datetime.now(datetime.UTC)
    cert: Any = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    made.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    made.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
