"""The data directory's files and folders are owner-only from the moment they exist (issue 11, defect 12)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from moto import mock_aws

from mlambda_local.bootstrap import ensure_admin_key
from mlambda_local.private_files import private_directory, write_private, write_private_json


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> object:
    """A umask that would leave new files world-readable (022 is the usual one; 000 the worst)."""
    previous = os.umask(0)
    yield None
    os.umask(previous)


def test_private_directory_makes_every_missing_parent_owner_only(tmp_path: Path, open_umask: object) -> None:
    # Given a path three folders deep under an existing one
    # When it is made private
    private_directory(tmp_path / "a" / "b" / "c")
    # Then each folder it created is 0700
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode(path) == 0o700, path


def test_written_files_are_owner_only_even_over_a_leftover_temporary_file(
    tmp_path: Path, open_umask: object
) -> None:
    # Given a world-readable temporary file a crash left behind
    leftover = tmp_path / ".state.json.tmp"
    leftover.write_text("old")
    leftover.chmod(0o666)
    # When the state and a secret are written
    write_private_json(tmp_path / "state.json", {"control_token": "t"})
    write_private(tmp_path / "secret", "s3cret")
    # Then both are 0600 and whole
    assert mode(tmp_path / "state.json") == 0o600
    assert mode(tmp_path / "secret") == 0o600
    assert (tmp_path / "state.json").read_text() == '{"control_token": "t"}'


def test_the_admin_key_file_is_created_owner_only(tmp_path: Path, open_umask: object) -> None:
    # Given the keys table on moto
    import boto3

    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="keys",
            KeySchema=[{"AttributeName": "key_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # When the first admin key of a new data directory is made
        data_dir = tmp_path / "new" / ".mlambda"
        key = ensure_admin_key(data_dir, "keys", None)
    # Then the key file and the directory are owner-only
    assert mode(data_dir / "admin_key") == 0o600
    assert mode(data_dir) == 0o700
    assert (data_dir / "admin_key").read_text().strip() == key
