"""Credentials and transport for a Flink REST endpoint: `spec.restAuthSecretRef` (basic or bearer
token, for Flink behind an authenticating proxy) and `spec.tls` (a CA from a Secret, certificate
checks on by default).

Secret values are held only here and in the REST client's session: they are never put into an
error message, a log line, an Event or the status. Errors name the Secret and the key, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flinkop.spec import FlinkJobSpec

SecretReader = Callable[[str, str], Mapping[str, bytes] | None]  # (namespace, name) -> data, None when absent


class CredentialsError(Exception):
    """A referenced Secret is missing, unreadable or lacks a key; the message names it, never a value."""


@dataclass(frozen=True)
class RestCredentials:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    insecure_skip_verify: bool = False

    @property
    def key(self) -> str:
        """Tells credentials apart (one REST client each) without holding or showing them."""
        h = hashlib.sha256()
        for part in (self.username, self.password, self.token):
            h.update((part or "").encode() + b"\0")
        h.update((self.ca_pem or b"") + b"\0" + (b"1" if self.insecure_skip_verify else b"0"))
        return h.hexdigest()[:16]

    def authorization(self) -> tuple[str, str] | str | None:
        """(username, password) for basic auth, the bearer header value, or None."""
        if self.token is not None:
            return f"Bearer {self.token}"
        if self.username is not None:
            return (self.username, self.password or "")
        return None

    def secret_texts(self) -> tuple[str, ...]:
        """The secret strings as they may come back in an answer: the token, the password, and the
        base64 of `user:password` that basic auth sends (an endpoint may echo its request's headers)."""
        texts = [t for t in (self.token, self.password) if t]
        if self.username is not None and self.password:
            texts.append(base64.b64encode(f"{self.username}:{self.password}".encode()).decode())
        return tuple(sorted(set(texts), key=len, reverse=True))

    def verify(self) -> bool | str:
        """What `requests` takes as `verify`: a CA bundle file, or whether to check certificates."""
        if self.insecure_skip_verify:
            return False
        if self.ca_pem is not None:
            return str(_ca_file(self.ca_pem))
        return True


NO_CREDENTIALS = RestCredentials()


def resolve(spec: FlinkJobSpec, namespace: str, read_secret: SecretReader) -> RestCredentials:
    """The credentials a FlinkJob's spec refers to, read from Secrets in its own namespace."""
    username = password = token = None
    if spec.rest_auth_secret is not None:
        data = _secret(read_secret, namespace, spec.rest_auth_secret, "spec.restAuthSecretRef")
        if "token" in data:
            token = _text(data, "token", spec.rest_auth_secret)
        elif "username" in data and "password" in data:
            username = _text(data, "username", spec.rest_auth_secret)
            password = _text(data, "password", spec.rest_auth_secret)
        else:
            raise CredentialsError(
                f"Secret {namespace}/{spec.rest_auth_secret} (spec.restAuthSecretRef) has neither a `token` key "
                "(bearer) nor `username` and `password` keys (basic)"
            )
    ca_pem = None
    if spec.tls_ca_secret is not None:
        name, key = spec.tls_ca_secret
        data = _secret(read_secret, namespace, name, "spec.tls.caSecretRef")
        if key not in data:
            raise CredentialsError(f"Secret {namespace}/{name} (spec.tls.caSecretRef) has no key {key!r}")
        ca_pem = data[key]
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise CredentialsError(
                f"Secret {namespace}/{name} key {key!r} (spec.tls.caSecretRef) is not a PEM certificate"
            )
    return RestCredentials(username, password, token, ca_pem, spec.tls_insecure_skip_verify)


def _secret(read_secret: SecretReader, namespace: str, name: str, field_name: str) -> Mapping[str, bytes]:
    data = read_secret(namespace, name)
    if data is None:
        raise CredentialsError(f"Secret {namespace}/{name} named by {field_name} does not exist")
    return data


def _text(data: Mapping[str, bytes], key: str, name: str) -> str:
    try:
        return data[key].decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise CredentialsError(f"Secret {name} key {key!r} is not UTF-8 text") from exc


def _ca_file(pem: bytes) -> Path:
    """The CA bundle as a file for `requests`, named by its digest, written once (atomically)."""
    directory = Path(tempfile.gettempdir()) / "flinkop-ca"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{hashlib.sha256(pem).hexdigest()[:24]}.pem"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, path)
    return path
