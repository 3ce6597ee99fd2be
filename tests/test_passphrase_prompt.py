"""An encrypted signing key: the passphrase is read from a terminal prompt (never the command line)."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from conftest import REPO, VECTORS, run_oracle
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _run_on_terminal(argv: list[str], answer: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal; answer the first prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("ESP_SECURE_KEY_PASSPHRASE", None)
        os.execve(sys.executable, [sys.executable, "-m", "esp_secure_build", *argv], env)
    output, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Passphrase for" in output:
            os.write(fd, answer + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_passphrase_prompt_on_a_terminal(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"correct horse")))  # fmt: skip
    data = VECTORS / "esptool/secure_images/bootloader_unsigned_v2.bin"
    out = tmp_path / "signed.bin"
    code, text = _run_on_terminal(["sign-data", "-v", "2", "-k", str(encrypted), "-o", str(out), str(data)], b"correct horse")
    assert code == 0, text
    assert b"correct horse" not in text  # not echoed
    pub = tmp_path / "pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    run_oracle("espsecure", "verify-signature", "--version", "2", "--keyfile", pub, out)

    wrong = tmp_path / "wrong.bin"
    code, text = _run_on_terminal(["sign-data", "-v", "2", "-k", str(encrypted), "-o", str(wrong), str(data)], b"battery staple")
    assert code == 2 and b"wrong passphrase" in text and b"Traceback" not in text
    assert not wrong.exists()
