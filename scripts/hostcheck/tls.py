"""The certificate the host presents for the public name: its names, its dates, its chain."""

from __future__ import annotations

import datetime as dt
import socket
import ssl

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from hostcheck.results import Result, failed, passed

# A certificate closer than this to its end fails: Let's Encrypt renews 30 days before, so a
# certificate with 14 days left means renewal has been failing for two weeks.
MIN_DAYS_LEFT = 14


def unverified_context() -> ssl.SSLContext:
    """TLS that accepts any certificate (to read one that the system store would refuse)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch_certificate(address: str, port: int, name: str, timeout: float = 10.0) -> bytes:
    """The DER certificate presented at address:port for SNI `name`, unverified."""
    with (
        socket.create_connection((address, port), timeout=timeout) as raw,
        unverified_context().wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{address}:{port} presented no certificate")
    return der


def chain_error(
    address: str, port: int, name: str, context: ssl.SSLContext, timeout: float = 10.0
) -> str | None:
    """None when the chain verifies against `context` for `name`, else the verifier's reason."""
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message or str(exc)
    except (ssl.SSLError, OSError) as exc:
        return str(exc)


def dns_names(certificate: x509.Certificate) -> list[str]:
    """The subjectAltName DNS names (the common name only when there are none)."""
    try:
        san = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        return list(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return [str(attr.value) for attr in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(name: str, pattern: str) -> bool:
    """RFC 6125 matching: exact (case-insensitive) or one leftmost wildcard label."""
    name, pattern = name.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern


def evaluate(
    der: bytes, name: str, now: dt.datetime, staging: bool = False, chain: str | None = None
) -> Result:
    """PASS when the certificate names `name`, has started, and has more than MIN_DAYS_LEFT days left.

    `chain` is the chain verifier's error (None: verified). A staging certificate's chain is not
    judged: Let's Encrypt's staging CA is untrusted by design.
    """
    certificate = x509.load_der_x509_certificate(der)
    names = dns_names(certificate)
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    left = not_after - now
    issuer = certificate.issuer.rfc4514_string()
    problems: list[str] = []
    if not any(name_matches(name, pattern) for pattern in names):
        problems.append(f"it names {', '.join(names) or 'nothing'}, not {name}")
    if now < not_before:
        problems.append(f"it is valid only from {not_before:%Y-%m-%d %H:%M} UTC")
    if left <= dt.timedelta(days=MIN_DAYS_LEFT):
        problems.append(
            f"it expires {not_after:%Y-%m-%d} ({_days(left)}), not more than {MIN_DAYS_LEFT} days away"
        )
    if not staging and chain is not None:
        problems.append(f"its chain does not verify against the system store: {chain}")
    if problems:
        return failed("certificate", f"for {name} (issuer {issuer}): " + "; ".join(problems))
    trust = (
        "a STAGING certificate (Let's Encrypt staging, untrusted by design): "
        "names and dates checked, chain not"
        if staging
        else "chain verified against the system store"
    )
    return passed(
        "certificate", f"{name} until {not_after:%Y-%m-%d} ({_days(left)} left), issuer {issuer}; {trust}"
    )


def _days(delta: dt.timedelta) -> str:
    days = delta.days
    return f"{days} days" if days >= 0 else f"{-days} days ago"
