"""fetch-ca against a real TLS server on 127.0.0.1 (root -> intermediate -> leaf), bounded in time."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from test_certs_pki import key_pem, make_cert, make_chain, new_key, pem, write

from esp_secure_build import certs
from esp_secure_build.errors import EspSecureError

pytest.importorskip("OpenSSL", reason="fetch-ca needs pyOpenSSL")


class TlsServer:
    """Serves TLS on 127.0.0.1 with a given certificate list until stopped; handshakes only."""

    def __init__(self, chain_file: Path, key_file: Path, tls: bool = True):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain_file, key_file)
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                if not self.tls:  # accept and say nothing: the client must give up by itself
                    self.stop.wait(5)
                    continue
                with contextlib.suppress(OSError), self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # until the client closes

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[x509.Certificate], Path]:
    chain, leaf_key = make_chain()
    folder = tmp_path_factory.mktemp("pki")
    write(folder / "leaf.key", key_pem(leaf_key))
    return chain, folder


@contextlib.contextmanager
def serving(pki: tuple[list[x509.Certificate], Path], order: tuple[int, ...], tls: bool = True) -> Iterator[TlsServer]:
    chain, folder = pki
    chain_file = write(folder / f"chain-{''.join(map(str, order))}.pem", pem(*(chain[i] for i in order)))
    server = TlsServer(chain_file, folder / "leaf.key", tls)
    try:
        yield server
    finally:
        server.close()


def test_fetch_chain_in_order(pki: tuple[list[x509.Certificate], Path]) -> None:
    chain = pki[0]
    with serving(pki, (0, 1, 2)) as server:
        assert certs.fetch_chain("127.0.0.1", server.port, timeout=10) == chain


@pytest.fixture
def no_system_store(tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI with an empty system trust store (the test CAs are private)."""
    empty = write(tmp_path / "empty-store.pem", b"")
    return {"SSL_CERT_FILE": str(empty), "SSL_CERT_DIR": str(tmp_path / "no-such-dir")}


def test_cli_fetch_ca_private_ca_needs_a_decision(
    pki: tuple[list[x509.Certificate], Path], tmp_path: Path, no_system_store: dict[str, str]
) -> None:
    """A CA nobody vouches for is shown, not written, until its fingerprint is given or TOFU is asked for."""
    chain = pki[0]
    fingerprint = certs.summarize(chain[2]).fingerprint
    out = tmp_path / "ca.pem"
    with serving(pki, (0, 1, 2)) as server:
        address = f"127.0.0.1:{server.port}"
        proc = run_cli("fetch-ca", address, "-o", out, "--timeout", "10", env_extra=no_system_store)
        assert_one_line_error(proc, address, fingerprint, "does not know", "--expect-fingerprint")
        assert not out.exists()
        for decision in (["--expect-fingerprint", fingerprint.replace(":", "").lower()], ["--trust-on-first-use"]):
            proc = run_cli("fetch-ca", address, "-o", out, *decision, env_extra=no_system_store)
            assert proc.returncode == 0, proc.stderr
            assert out.read_bytes() == pem(chain[2])
            assert fingerprint in proc.stdout and "trust:" in proc.stdout
            out.unlink()
        # Keeping the whole chain would embed the leaf: refused, nothing written.
        bundle = tmp_path / "bundle.pem"
        proc = run_cli(
            "fetch-ca", f"localhost:{server.port}", "-o", bundle, "--keep-bundle", "--trust-on-first-use",
            env_extra=no_system_store,
        )  # fmt: skip
        assert_one_line_error(proc, f"localhost:{server.port}", "certificate 1 of 3", "is not a CA")
        assert not bundle.exists()


def test_fetch_ca_known_to_the_system_store(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    """SSL_CERT_FILE holding the root: accepted without a decision; a server omitting its root gets it from there."""
    chain = pki[0]
    store = write(tmp_path / "store.pem", pem(chain[2]))
    env = {"SSL_CERT_FILE": str(store)}
    for order in ((0, 1, 2), (0, 1)):
        out = tmp_path / f"ca-{len(order)}.pem"
        with serving(pki, order) as server:
            proc = run_cli("fetch-ca", f"127.0.0.1:{server.port}", "-o", out, env_extra=env)
        assert proc.returncode == 0, proc.stderr
        assert "system trust store knows" in proc.stdout
        assert out.read_bytes() == pem(chain[2])
    assert "did not send its root" in proc.stdout


def test_fetch_ca_wrong_host_name(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    """The leaf names localhost and 127.0.0.1: asking for another name is refused, trust-on-first-use or not."""
    out = tmp_path / "ca.pem"
    with serving(pki, (0, 1, 2)) as server:
        address = f"127.0.0.1:{server.port}"
        proc = run_cli("fetch-ca", address, "-o", out, "--servername", "device.example.com", "--trust-on-first-use")
        assert_one_line_error(proc, address, "not valid for device.example.com", "localhost")
        assert not out.exists()
        with pytest.raises(EspSecureError, match=r"not valid for evil\.example"):
            certs.fetch_ca(f"localhost:{server.port}", out, server_name="evil.example", trust_store=[pki[0][2]])
    assert not out.exists()


@pytest.mark.parametrize(
    "host, names, ok",
    [
        ("localhost", ["localhost"], True),
        ("LocalHost.", ["localhost"], True),
        ("a.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], False),
        ("example.com", ["*.example.com"], False),
        ("a.com", ["*.com"], False),
        ("other.example.com", ["device.example.com"], False),
    ],
)
def test_certificate_matches_host(host: str, names: list[str], ok: bool) -> None:
    key = new_key()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=timezone.utc))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=timezone.utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    assert certs.certificate_matches_host(leaf, host) is ok


def test_fetch_ca_broken_chain(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    """An intermediate of the right name but another key: the leaf's signature does not verify."""
    leaf, inter, root = pki[0]
    impostor = make_cert("Test Intermediate CA", new_key(), issuer=root, issuer_key=new_key())
    assert impostor.subject == inter.subject
    chain_file = write(tmp_path / "broken.pem", pem(leaf, impostor, root))
    server = TlsServer(chain_file, pki[1] / "leaf.key")
    out = tmp_path / "ca.pem"
    try:
        proc = run_cli("fetch-ca", f"127.0.0.1:{server.port}", "-o", out, "--trust-on-first-use")
    finally:
        server.close()
    assert_one_line_error(proc, "broken chain", "certificate 1 (O=Test,CN=localhost)", "does not verify")
    assert not out.exists()


def test_fetch_ca_intercepting_proxy(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    """A proxy re-signs the host's certificate with its own CA: caught by the fingerprint and by the store."""
    real_root = pki[0][2]
    proxy_key, leaf_key = new_key(), new_key()
    proxy_root = make_cert("Corporate Proxy CA", proxy_key)
    leaf = make_cert("localhost", leaf_key, issuer=proxy_root, issuer_key=proxy_key, ca=False)
    write(tmp_path / "proxy-leaf.key", key_pem(leaf_key))
    server = TlsServer(write(tmp_path / "proxy.pem", pem(leaf, proxy_root)), tmp_path / "proxy-leaf.key")
    out = tmp_path / "ca.pem"
    address = f"127.0.0.1:{server.port}"
    real = certs.summarize(real_root).fingerprint
    try:
        proc = run_cli("fetch-ca", address, "-o", out, "--expect-fingerprint", real)
        assert_one_line_error(proc, address, "Corporate Proxy CA", f"not the expected {real}")
        store = write(tmp_path / "store.pem", pem(real_root))
        proc = run_cli("fetch-ca", address, "-o", out, env_extra={"SSL_CERT_FILE": str(store)})
        assert_one_line_error(proc, address, "Corporate Proxy CA", "does not know")
    finally:
        server.close()
    assert not out.exists()


def test_fetch_ca_without_root_warns(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    chain = pki[0]
    out = tmp_path / "inter.pem"
    with serving(pki, (0, 1)) as server:
        result = certs.fetch_ca(f"127.0.0.1:{server.port}", out, timeout=10, trust_on_first_use=True, trust_store=[])
    assert out.read_bytes() == pem(chain[1])
    assert len(result.warnings) == 1 and "not self-signed" in result.warnings[0]
    assert "trusted on first use" in result.notes[0]


def test_fetch_ca_out_of_order(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    out = tmp_path / "ca.pem"
    with serving(pki, (0, 2, 1)) as server:
        proc = run_cli("fetch-ca", f"127.0.0.1:{server.port}", "-o", out, "--trust-on-first-use")
    assert_one_line_error(proc, "chain out of order")
    assert not out.exists()


def test_fetch_ca_unreachable(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    out = tmp_path / "ca.pem"
    proc = run_cli("fetch-ca", f"127.0.0.1:{port}", "-o", out, "--timeout", "5")
    assert_one_line_error(proc, f"127.0.0.1:{port}", "cannot connect")
    assert not out.exists()


def test_fetch_ca_silent_server_times_out(pki: tuple[list[x509.Certificate], Path]) -> None:
    with (
        serving(pki, (0, 1, 2), tls=False) as server,
        pytest.raises(EspSecureError, match=r"TLS handshake not done within 0\.5 s"),
    ):
        certs.fetch_chain("127.0.0.1", server.port, timeout=0.5)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("example.com", ("example.com", 443)),
        ("h:8443", ("h", 8443)),
        ("[::1]:4433", ("::1", 4433)),
        ("::1", ("::1", 443)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert certs.parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["h:0", "h:99999", "h:x", "[::1", ":443"])
def test_parse_host_port_errors(text: str) -> None:
    with pytest.raises(EspSecureError):
        certs.parse_host_port(text)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_saved_s_client_output(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    """The seed's manual way: save `openssl s_client -showcerts` output; check-cert takes the root from it."""
    chain = pki[0]
    with serving(pki, (0, 1, 2)) as server:
        proc = subprocess.run(
            ["openssl", "s_client", "-showcerts", "-connect", f"127.0.0.1:{server.port}"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
        )  # fmt: skip
    saved = write(tmp_path / "s_client.txt", proc.stdout)
    assert saved.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == 3
    out = tmp_path / "ca.pem"
    result = run_cli("check-cert", saved, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == pem(chain[2])
    assert certs.load_certificates(saved) == chain
