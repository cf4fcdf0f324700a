"""Restore failures name the operator: the uid and name of an operator Flink names by its id, read
from a savepoint's `_metadata` laid out as Flink 2.3 writes it (format version 6)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from flinkop.savepoint_metadata import (
    MAGIC,
    MetadataError,
    explain_unmapped,
    find_operators,
    local_metadata_path,
    unmapped_operator_ids,
)

COUNTER_ID = "0da08f51eaa85fc298e176a139b3649a"
SOURCE_ID = "bc764cd8ddf7a0cff126f51c16239658"
FLINK_ERROR = (
    "java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint file:/sp/savepoint-1. "
    f"Cannot map checkpoint/savepoint state for operator {COUNTER_ID} to the new program, because the "
    "operator is not available in the new program. If you want to allow to skip this, you can set the "
    "--allowNonRestoredState option on the CLI."
)


def write_utf(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def operator_state(name: str, uid: str, operator_id: str, handles: bytes) -> bytes:
    return write_utf(name) + write_utf(uid) + bytes.fromhex(operator_id) + struct.pack(">ii", 3, 128) + handles


def metadata(*operators: bytes) -> bytes:
    # magic, version, checkpoint id, no master states, the operator count, then each operator state
    return struct.pack(">iiqii", MAGIC, 6, 42, 0, len(operators)) + b"".join(operators)


SAVEPOINT = metadata(
    operator_state("Source: numbers", "source", SOURCE_ID, b"\x00\x00\x00\x01" + b"\x07" * 40),
    operator_state("counter", "counter", COUNTER_ID, b"\x00\x00\x00\x03" + bytes(range(256))),
)


def test_the_operator_id_in_flinks_restore_error_is_found() -> None:
    assert unmapped_operator_ids(FLINK_ERROR + " " + FLINK_ERROR) == [COUNTER_ID]
    assert unmapped_operator_ids("Job failed: java.lang.RuntimeException: boom") == []


def test_each_operator_is_named_by_the_uid_and_name_written_before_its_id() -> None:
    found = find_operators(SAVEPOINT, [COUNTER_ID, SOURCE_ID])
    assert (found[COUNTER_ID].uid, found[COUNTER_ID].name) == ("counter", "counter")
    assert (found[SOURCE_ID].uid, found[SOURCE_ID].name) == ("source", "Source: numbers")


def test_an_operator_without_a_uid_is_found_with_an_empty_uid() -> None:
    found = find_operators(metadata(operator_state("Map", "", COUNTER_ID, b"")), [COUNTER_ID])
    assert (found[COUNTER_ID].uid, found[COUNTER_ID].name) == ("", "Map")


def test_a_file_that_is_not_a_savepoints_metadata_is_refused() -> None:
    with pytest.raises(MetadataError, match="magic"):
        find_operators(b"PK\x03\x04 not a savepoint", [COUNTER_ID])


def test_the_message_names_the_uid_and_says_which_field_to_set(tmp_path: Path) -> None:
    (tmp_path / "_metadata").write_bytes(SAVEPOINT)
    message = explain_unmapped(FLINK_ERROR, tmp_path.as_uri())
    assert message is not None
    assert "operator uid `counter` (name `counter`) holds state the new version has no operator for" in message
    assert "spec.allowNonRestoredState" in message and "keep its uid" in message


def test_an_unreadable_or_unreachable_metadata_is_said_and_flinks_id_kept(tmp_path: Path) -> None:
    missing = explain_unmapped(FLINK_ERROR, (tmp_path / "gone").as_uri())
    assert missing is not None and "could not be read" in missing and COUNTER_ID in missing
    remote = explain_unmapped(FLINK_ERROR, "s3://bucket/savepoints/savepoint-1")
    assert remote is not None and "not on a filesystem the operator can read" in remote and COUNTER_ID in remote
    assert local_metadata_path("s3://bucket/sp") is None
    assert local_metadata_path("file:/sp/savepoint-1") == Path("/sp/savepoint-1/_metadata")


def test_a_metadata_file_over_the_size_bound_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "_metadata").write_bytes(SAVEPOINT)
    message = explain_unmapped(FLINK_ERROR, tmp_path.as_uri(), max_bytes=16)
    assert message is not None and "larger than 16 bytes" in message


def test_a_failure_of_another_kind_gets_no_explanation(tmp_path: Path) -> None:
    assert explain_unmapped("java.lang.RuntimeException: boom", tmp_path.as_uri()) is None
