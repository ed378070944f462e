"""TLS is verified: real TLS receivers on loopback with certificates from trustme.

Every case runs on the async transport (trio and asyncio) and the blocking
one; the last tests run whole drivers, whose handshake must use the CA file
given to them.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conformance.harness import DRIVERS, running, verifying, wait_endpoint
from tests.http.test_outbound_guard import deliver
from transports.http.guard import OutboundPolicy
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver
from webhook_core import EndpointState, Outcome

KINDS = ("trio", "asyncio", "sync")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(configure: trustme.LeafCert | tuple[bytes, bytes]) -> ssl.SSLContext:
    """A server-side context holding a trustme leaf, or a (certificate, key) PEM pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if isinstance(configure, trustme.LeafCert):
        configure.configure_cert(context)
        return context
    cert, key = configure
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "cert.pem").write_bytes(cert)
        (Path(scratch) / "key.pem").write_bytes(key)
        context.load_cert_chain(Path(scratch) / "cert.pem", Path(scratch) / "key.pem")
    return context


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate for ``host`` signed by its own key (PEM cert, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def tls_rx(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[LoopbackReceiver]:
    """A TLS receiver; ``request.param`` is (certificate kind, host the URL names)."""
    kind, url_host = request.param
    if kind == "localhost":
        context = server_context(ca.issue_cert("localhost", "127.0.0.1"))
    elif kind == "name-only":
        context = server_context(ca.issue_cert("localhost"))
    elif kind == "other-host":
        context = server_context(ca.issue_cert("other.example"))
    elif kind == "expired":
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        context = server_context(
            ca.issue_cert("localhost", not_before=past, not_after=past + datetime.timedelta(days=1))
        )
    else:
        context = server_context(self_signed("localhost"))
    with LoopbackReceiver(tls=context, url_host=url_host) as receiver:
        yield receiver


def test_the_connection_goes_to_a_vetted_address_but_tls_checks_the_name(
    ca: trustme.CA, ca_file: str
) -> None:
    # The certificate names only "localhost": verification and SNI must use the
    # URL's host name, although the socket was opened to the vetted 127.0.0.1.
    context = server_context(ca.issue_cert("localhost"))
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    with LoopbackReceiver(tls=context, url_host="localhost") as rx:
        for kind in KINDS:
            result, _ = deliver(kind, rx.url("/hook"), policy(ca_file))
            assert result.status == 200, (kind, result)
    assert names == ["localhost"] * len(KINDS)
    assert len(rx.requests) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_receiver_that_never_finishes_the_tls_handshake_is_cut_off(
    kind: str, ca_file: str
) -> None:
    with socket.socket() as silent:  # the kernel accepts; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result, _ = deliver(kind, f"https://localhost:{port}/hook", policy(ca_file), timeout=0.5)
    assert result.error_kind is Outcome.TIMEOUT, result


def policy(ca_file: str | None) -> OutboundPolicy:
    return OutboundPolicy(LOOPBACK_NETWORKS, ca_file=ca_file)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "tls_rx", [("localhost", "localhost"), ("localhost", "127.0.0.1")], indirect=True
)
def test_a_configured_ca_is_accepted(kind: str, tls_rx: LoopbackReceiver, ca_file: str) -> None:
    result, body = deliver(kind, tls_rx.url("/hook"), policy(ca_file))
    assert result.status == 200 and body == b"OK"
    assert [r.path for r in tls_rx.requests] == ["/hook"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tls_rx", [("localhost", "localhost")], indirect=True)
def test_a_private_ca_is_refused_unless_configured(kind: str, tls_rx: LoopbackReceiver) -> None:
    result, _ = deliver(kind, tls_rx.url("/hook"), policy(None))
    assert result.error_kind is Outcome.TLS_ERROR, result
    assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
    assert tls_rx.requests == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("tls_rx", "reason"),
    [
        (("self-signed", "localhost"), "self-signed certificate"),
        (("other-host", "localhost"), "Hostname mismatch"),
        (("other-host", "127.0.0.1"), "IP address mismatch"),
        (("expired", "localhost"), "certificate has expired"),
    ],
    indirect=["tls_rx"],
    ids=["self-signed", "wrong-host", "wrong-ip", "expired"],
)
def test_bad_certificates_are_refused(
    kind: str, tls_rx: LoopbackReceiver, ca_file: str, reason: str
) -> None:
    result, _ = deliver(kind, tls_rx.url("/hook"), policy(ca_file))
    assert result.error_kind is Outcome.TLS_ERROR, result
    assert reason in (result.error or "")
    assert tls_rx.requests == []


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("tls_rx", [("localhost", "localhost")], indirect=True)
def test_drivers_verify_with_their_ca_file(
    driver: str, tls_rx: LoopbackReceiver, ca_file: str
) -> None:
    tls_rx.default = verifying()
    with running(driver, allow_http=False, ca_file=ca_file) as hooks:
        endpoint = hooks.add_endpoint(tls_rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
    with running(driver, allow_http=False) as hooks:
        endpoint = hooks.add_endpoint(tls_rx.url("/hook"))
        refused = wait_endpoint(hooks, endpoint.id, EndpointState.UNVERIFIED)
        assert "tls_error" in (refused.last_error or "")


def test_drivers_name_a_ca_file_they_cannot_load(tmp_path: Path) -> None:
    from transports.aio.service import WebhookService
    from transports.sync.service import ThreadedWebhookService
    from webhook_core import ConfigError

    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    for driver in (WebhookService, ThreadedWebhookService):
        with pytest.raises(ConfigError, match=r"CA file '.*ca\.pem' cannot be loaded"):
            driver(ca_file=str(bad))
