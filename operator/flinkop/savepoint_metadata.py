"""Names the operators a restore could not map, from the savepoint's own `_metadata`.

Flink's restore error names an operator by its 32-hex id ("Cannot map checkpoint/savepoint state for
operator 0da08f51... to the new program"), which nobody knows an operator by. A savepoint's
`_metadata` (format version 6 on Flink 2.3, the same layout since version 3) writes, per operator,
its name and its uid (each as Java's `writeUTF`: a 2-byte big-endian length and modified UTF-8), then
its 16-byte id (the same bytes as the hex in the error), parallelism and max parallelism, then its
state handles. Walking the state handles of every operator would mean parsing every handle type;
instead the id from the error is looked up, and the two strings written right before it are read.
Reads are bounded (`max_bytes`), and only savepoints on a filesystem the operator sees (`file:`)
can be read; for others the message says so and Flink's text stands alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

MAGIC = 0x4960672D
UNMAPPED = re.compile(r"Cannot map checkpoint/savepoint state for operator ([0-9a-fA-F]{32})")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OperatorEntry:
    operator_id: str
    name: str
    uid: str


class MetadataError(Exception):
    """The `_metadata` could not be read or is not a Flink savepoint's."""


def unmapped_operator_ids(failure: str) -> list[str]:
    """The operator ids a restore error names, in order, each once."""
    seen: list[str] = []
    for found in UNMAPPED.findall(failure):
        if found.lower() not in seen:
            seen.append(found.lower())
    return seen


def _utf_before(data: bytes, end: int) -> tuple[str, int] | None:
    """The `writeUTF` string that ends at `end`: (text, offset of its length field), the shortest
    one that fits (names and uids are short; a longer match would be chance)."""
    for length in range(0, min(end - 2, 65535) + 1):
        start = end - length
        if int.from_bytes(data[start - 2 : start], "big") != length:
            continue
        try:
            text = data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.isprintable():
            return text, start - 2
    return None


def find_operators(data: bytes, operator_ids: list[str]) -> dict[str, OperatorEntry]:
    """The name and uid of each of `operator_ids` found in a `_metadata` file's bytes."""
    if len(data) < 8 or int.from_bytes(data[0:4], "big") != MAGIC:
        raise MetadataError("not a Flink savepoint _metadata file (wrong magic number)")
    found: dict[str, OperatorEntry] = {}
    for operator_id in operator_ids:
        at = data.find(bytes.fromhex(operator_id), 8)
        while at != -1:
            uid = _utf_before(data, at)
            name = _utf_before(data, uid[1]) if uid is not None else None
            if uid is not None and name is not None:
                found[operator_id] = OperatorEntry(operator_id, name[0], uid[0])
                break
            at = data.find(bytes.fromhex(operator_id), at + 1)
    return found


def local_metadata_path(savepoint_path: str) -> Path | None:
    """Where the savepoint's `_metadata` is on this filesystem, or None when it is elsewhere."""
    parts = urlsplit(savepoint_path)
    if parts.scheme in ("", "file") and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path)) / "_metadata"
    return None


def read_metadata(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise MetadataError(f"{path} is larger than {max_bytes} bytes")
    return data


def explain_unmapped(failure: str, savepoint_path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
    """What to tell a person about the operators a restore could not map; None when the failure is
    not of that kind."""
    ids = unmapped_operator_ids(failure)
    if not ids:
        return None
    advice = (
        "keep its uid in the new version, or set spec.allowNonRestoredState (OnJarChange or Always) "
        "to start without that state"
    )
    local = local_metadata_path(savepoint_path)
    if local is None:
        return (
            f"The savepoint's _metadata ({savepoint_path}) is not on a filesystem the operator can read, so "
            f"the operator is known only by Flink's id {', '.join(ids)}: {advice}."
        )
    try:
        entries = find_operators(read_metadata(local, max_bytes), ids)
    except MetadataError as exc:
        return f"The savepoint's _metadata could not be read ({exc}); operator id {', '.join(ids)}: {advice}."
    named = []
    for operator_id in ids:
        entry = entries.get(operator_id)
        if entry is None:
            named.append(f"operator id {operator_id} (not found in the savepoint's _metadata)")
        else:
            uid = f"uid `{entry.uid}`" if entry.uid else f"no uid (id {operator_id})"
            named.append(f"operator {uid} (name `{entry.name}`)")
    verb = "holds" if len(named) == 1 else "hold"
    return f"{'; '.join(named)} {verb} state the new version has no operator for: {advice}."
