"""A test CA and serving certificates made with `openssl`, for TLS endpoints the tests run on loopback
(the admission webhook the apiserver calls, a TLS-terminating proxy in front of Flink).

Certificates carry their names as subjectAltName (Go, hence kube-apiserver, ignores the CommonName)
and the key identifiers strict verifiers ask for. They are valid for two days.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "2"


class CertError(RuntimeError):
    """openssl failed; the message carries its stderr."""


@dataclass(frozen=True)
class CA:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CertError(f"openssl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def make_ca(workdir: Path, name: str = "test-ca") -> CA:
    """A self-signed CA: `<workdir>/<name>.crt` and its key `<name>.key` (mode 0600)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key, config = workdir / f"{name}.crt", workdir / f"{name}.key", workdir / f"{name}.cnf"
    config.write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = " + name + "\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", _DAYS,
        "-config", str(config), "-extensions", "ca", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    key.chmod(0o600)
    return CA(cert=cert, key=key)


def issue_server_cert(
    ca: CA, workdir: Path, name: str, *, ip: str | None = None, dns: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """A serving certificate signed by `ca` for `ip` and/or `dns` names: (`<name>.crt`, `<name>.key`)."""
    if ip is None and not dns:
        raise ValueError("a serving certificate needs an IP address or a DNS name")
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key, csr, ext = (workdir / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    sans = [f"IP:{ip}"] if ip else []
    sans += [f"DNS:{d}" for d in dns]
    ext.write_text(
        "[server]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
        f"extendedKeyUsage = serverAuth\nsubjectAltName = {', '.join(sans)}\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
    )
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    key.chmod(0o600)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(secrets.randbits(63)), "-days", _DAYS, "-sha256",
        "-extfile", str(ext), "-extensions", "server", "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    return cert, key


def issue_client_cert(ca: CA, workdir: Path, name: str, *, organization: str | None = None) -> tuple[Path, Path]:
    """A client certificate signed by `ca`: CommonName `name` (the user), Organization `organization`
    (a group, for Kubernetes): (`<name>.crt`, `<name>.key`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stem = name.replace(":", "_")
    cert, key, csr, ext = (workdir / f"{stem}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    subject = f"/CN={name}" + (f"/O={organization}" if organization else "")
    ext.write_text(
        "[client]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
    )
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", subject,
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    key.chmod(0o600)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(secrets.randbits(63)), "-days", _DAYS, "-sha256",
        "-extfile", str(ext), "-extensions", "client", "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    return cert, key
