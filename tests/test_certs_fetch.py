"""fetch-ca against a real TLS server on 127.0.0.1 (root -> intermediate -> leaf), bounded in time."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli
from cryptography import x509
from test_certs_pki import key_pem, make_chain, pem, write

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


def test_cli_fetch_ca_writes_root(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    chain = pki[0]
    out = tmp_path / "ca.pem"
    with serving(pki, (0, 1, 2)) as server:
        proc = run_cli("fetch-ca", f"127.0.0.1:{server.port}", "-o", out, "--timeout", "10")
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == pem(chain[2])
        assert certs.summarize(chain[2]).fingerprint in proc.stdout
        # Keeping the whole chain would embed the leaf: refused, nothing written.
        bundle = tmp_path / "bundle.pem"
        proc = run_cli("fetch-ca", f"localhost:{server.port}", "-o", bundle, "--keep-bundle")
        assert_one_line_error(proc, f"localhost:{server.port}", "certificate 1 of 3", "is not a CA")
        assert not bundle.exists()


def test_fetch_ca_without_root_warns(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    chain = pki[0]
    out = tmp_path / "inter.pem"
    with serving(pki, (0, 1)) as server:
        result = certs.fetch_ca(f"127.0.0.1:{server.port}", out, timeout=10)
    assert out.read_bytes() == pem(chain[1])
    assert len(result.warnings) == 1 and "not self-signed" in result.warnings[0]


def test_fetch_ca_out_of_order(pki: tuple[list[x509.Certificate], Path], tmp_path: Path) -> None:
    out = tmp_path / "ca.pem"
    with serving(pki, (0, 2, 1)) as server:
        proc = run_cli("fetch-ca", f"127.0.0.1:{server.port}", "-o", out)
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
