"""The local cloud's state on disk: current state, not history, written before each response.

moto keeps everything in memory. ``StateStore`` keeps a copy of what matters in
``<data_dir>/state/``, so that a local cloud killed at any moment (``kill -9`` included) comes
back with everything it acknowledged:

- ``state.sqlite3`` (SQLite in WAL mode) holds one row per live thing: a DynamoDB item, an S3
  key (all its versions' metadata), an in-progress multipart upload, an SQS message (body,
  receive count, visibility), and the configuration of tables, queues, topics, subscriptions,
  rules and buses. A row is replaced when its thing changes and deleted when it goes, so the
  file's size follows what is stored now, never how much traffic went through.
- ``blobs/`` holds S3 bodies (objects and uploaded parts), one file each, written once. moto's
  copy of the body is then swapped for a reference to the file (``BlobBuffer``), so bodies
  live on disk, not in memory, and a restart opens no body at all.

**When**: the front server (``moto_server``) records what each request changed (see
``moto_patches``) and calls ``persist`` before the response leaves: new bodies are written to
their files, then one SQLite transaction writes every changed row. A body's file is complete
before the row that names it commits; a file no row names (a crash in between, an overwritten
object) is deleted after the commit or, in the background, after the next start.

**Durability**: a request is acknowledged only after its rows are committed and its bodies
written, so it survives ``kill -9`` of the process (the data is in the kernel, which the
process's death does not touch). Nothing is fsynced per request (``synchronous=NORMAL``): a
power cut or OS crash can lose the last moments but never corrupts the database, since WAL
commits are atomic. An fsync per request would put a disk flush (milliseconds) on every SQS
send and DynamoDB write of a development tool, for a failure it does not need to survive.

**Restart**: S3 bucket settings are replayed as the requests that made them (they are small and
their replay is deterministic); everything else is rebuilt directly in moto's models from the
rows, bodies by reference, so restart time grows with the number of things stored, not with
their bytes. Messages that were in flight come back visible at once, with their receive count:
the consumers that held them died with the process.

Not kept: S3 object ACLs other than the default, SNS delivery history, DynamoDB streams and
backups, and services the template does not use.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlambda_local.cloud import moto_patches
from mlambda_local.cloud.errors import MlambdaLocalError
from mlambda_local.cloud.moto_patches import Changes
from mlambda_local.private_files import open_private, private_directory

logger = logging.getLogger("mlambda.local")

Replay = Callable[[str, str, dict[str, str], bytes], tuple[int, bytes]]
"""(method, path with query, headers, body) -> (status, body): a request to the server being restored."""

STATE_DIR = "state"
DATABASE = "state.sqlite3"
BLOBS = "blobs"
FORMAT_VERSION = 1
_COPY_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS config (
    service TEXT NOT NULL, scope TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (service, scope));
CREATE TABLE IF NOT EXISTS s3_bucket_requests (
    bucket TEXT NOT NULL, subresource TEXT NOT NULL, request TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (bucket, subresource));
CREATE TABLE IF NOT EXISTS s3_keys (
    account TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, versions TEXT NOT NULL,
    PRIMARY KEY (account, bucket, key));
CREATE TABLE IF NOT EXISTS s3_uploads (
    account TEXT NOT NULL, bucket TEXT NOT NULL, upload_id TEXT NOT NULL, upload TEXT NOT NULL,
    PRIMARY KEY (account, bucket, upload_id));
CREATE TABLE IF NOT EXISTS ddb_items (
    scope TEXT NOT NULL, key TEXT NOT NULL, item TEXT NOT NULL, PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS sqs_messages (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, message TEXT NOT NULL);
"""


class BlobBuffer:
    """A read-only stand-in for moto's in-memory body buffer: ``size`` bytes of a file from ``offset``.

    The file is opened for each read, so a million stored objects hold no file descriptors.
    """

    def __init__(self, path: str, offset: int, size: int) -> None:
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.offset = offset
        self.size = size
        self._position = 0
        self.closed = False

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + position)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, count: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        left = max(0, self.size - self._position)
        count = left if count is None or count < 0 else min(count, left)
        if count == 0:
            return b""
        with open(self.path, "rb") as stream:  # noqa: PTH123 (a str path: no Path object per read)
            stream.seek(self.offset + self._position)
            data = stream.read(count)
        self._position += len(data)
        return data

    def write(self, _: bytes) -> int:
        raise io.UnsupportedOperation("a stored S3 body is immutable")

    def truncate(self, _: int | None = None) -> int:
        raise io.UnsupportedOperation("a stored S3 body is immutable")

    def close(self) -> None:
        self.closed = True


# -- JSON ---------------------------------------------------------------------------------------------


def _bytes_as_text(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _dumps(value: Any) -> str:
    """Rows are plain JSON; bytes (a DynamoDB binary nested in a map or list) become base64 text, as
    DynamoDB's own JSON carries them."""
    return orjson.dumps(value, default=_bytes_as_text, option=orjson.OPT_SORT_KEYS).decode()


_loads = orjson.loads


def _tag_bytes(value: Any) -> Any:
    """SQS message attributes keep their binary values as bytes: tagged, so they come back as bytes."""
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {key: _tag_bytes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tag_bytes(item) for item in value]
    return value


def _untag_bytes(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$b64" in value:
            return base64.b64decode(value["$b64"])
        return {key: _untag_bytes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag_bytes(item) for item in value]
    return value


def _regional(backends: Any) -> Iterator[tuple[str, str, Any]]:
    """Every (account, region, backend) a moto service holds: its state lives in each."""
    for account in list(backends.keys()):
        for region, backend in list(backends[account].items()):
            yield account, region, backend


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


@dataclass
class _Rows:
    """What one request's changes look like as rows (None: the row goes)."""

    s3_keys: dict[tuple[str, str, str], list[dict[str, Any]]]
    s3_uploads: dict[tuple[str, str], dict[str, dict[str, Any]]]
    ddb_items: list[tuple[str, str, str | None]]
    sqs_messages: list[tuple[str, str, str]]
    configs: dict[str, dict[str, str]]


class StateStore:
    """``<data_dir>/state``: see the module docstring."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / STATE_DIR
        self.blobs = self.directory / BLOBS
        self._blobs_text = str(self.blobs)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._collector: threading.Thread | None = None
        self.orphans_removed = 0

    # -- lifecycle ----------------------------------------------------------------------------------

    def open(self) -> None:
        """Create or open the store; fails clearly on a store written by an incompatible version."""
        private_directory(self.directory)
        private_directory(self.blobs)
        path = self.directory / DATABASE
        if not path.exists():
            os.close(open_private(path, os.O_WRONLY))
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file only
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # The WAL is checkpointed every ~1 MB and cut back to 1 MB: it cannot grow with traffic.
        db.execute("PRAGMA wal_autocheckpoint=256")
        db.execute(f"PRAGMA journal_size_limit={1 << 20}")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
        elif int(row[0]) != FORMAT_VERSION:
            db.close()
            raise MlambdaLocalError(
                f"{path} was written in state format {row[0]}; this mlambda reads format {FORMAT_VERSION}. "
                "Use another --data-dir, or remove this one to start empty."
            )
        db.execute("PRAGMA incremental_vacuum")  # give back the pages a past peak left free
        for name in (DATABASE + "-wal", DATABASE + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).chmod(0o600)
        self._db = db

    def close(self) -> None:
        if self._collector is not None:
            self._collector.join()
            self._collector = None
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._db is None:
            raise MlambdaLocalError("the state store is closed")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def size_bytes(self) -> int:
        """Bytes on disk: database, WAL and bodies."""
        return sum(path.stat().st_size for path in self.directory.rglob("*") if path.is_file())

    # -- writing ------------------------------------------------------------------------------------

    def persist(self, changes: Changes) -> None:
        """Write what one request changed; returns once it would survive the process being killed."""
        if not changes:
            return
        touched = self._touched_keys(changes)
        # Bodies first, outside the lock (they can be large); rows then read moto's state inside
        # it, so that of two requests changing one thing, the one persisted last wrote it last.
        self._store_bodies(touched, changes)
        with self._lock:
            rows = _Rows(
                s3_keys=self._s3_key_rows(touched),
                s3_uploads=self._s3_upload_rows(changes),
                ddb_items=_ddb_item_rows(changes),
                sqs_messages=[
                    ("/".join(ref), message_id, _dumps(_message_record(message)))
                    for message_id, (ref, message) in changes.sqs_messages.items()
                ],
                configs={service: _CONFIG_SNAPSHOTS[service]() for service in changes.configs},
            )
            dropped = self._write(changes, rows)
        for name in dropped:
            with contextlib.suppress(FileNotFoundError):
                self._blob_path(name).unlink()

    def _write(self, changes: Changes, rows: _Rows) -> set[str]:
        """One transaction; returns the body files no row names any more."""
        s3_keys, s3_uploads, ddb_items, sqs_messages, configs = (
            rows.s3_keys,
            rows.s3_uploads,
            rows.ddb_items,
            rows.sqs_messages,
            rows.configs,
        )
        dropped: set[str] = set()
        with self._transaction() as db:
            for request in changes.s3_bucket_requests:
                dropped |= self._apply_bucket_request(db, request)
            for (account, bucket, key), versions in s3_keys.items():
                old = db.execute(
                    "SELECT versions FROM s3_keys WHERE account = ? AND bucket = ? AND key = ?",
                    (account, bucket, key),
                ).fetchone()
                if old is not None:
                    dropped |= _blobs_of_versions(_loads(old[0]))
                if versions:
                    db.execute(
                        "INSERT OR REPLACE INTO s3_keys VALUES (?, ?, ?, ?)",
                        (account, bucket, key, _dumps(versions)),
                    )
                else:
                    db.execute(
                        "DELETE FROM s3_keys WHERE account = ? AND bucket = ? AND key = ?",
                        (account, bucket, key),
                    )
            for (account, bucket), uploads in s3_uploads.items():
                for upload_id, text in db.execute(
                    "SELECT upload_id, upload FROM s3_uploads WHERE account = ? AND bucket = ?",
                    (account, bucket),
                ).fetchall():
                    dropped |= {part["blob"] for part in _loads(text)["parts"]}
                    if upload_id not in uploads:  # completed or aborted
                        db.execute(
                            "DELETE FROM s3_uploads WHERE account = ? AND bucket = ? AND upload_id = ?",
                            (account, bucket, upload_id),
                        )
                for upload_id, upload in uploads.items():
                    db.execute(
                        "INSERT OR REPLACE INTO s3_uploads VALUES (?, ?, ?, ?)",
                        (account, bucket, upload_id, _dumps(upload)),
                    )
            for scope, key, item in ddb_items:
                if item is None:
                    db.execute("DELETE FROM ddb_items WHERE scope = ? AND key = ?", (scope, key))
                else:
                    db.execute("INSERT OR REPLACE INTO ddb_items VALUES (?, ?, ?)", (scope, key, item))
            db.executemany("DELETE FROM sqs_messages WHERE id = ?", [(i,) for i in changes.sqs_deleted])
            db.executemany(
                "INSERT INTO sqs_messages VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, message = excluded.message",
                [(message_id, queue, text) for queue, message_id, text in sqs_messages],
            )
            for service, snapshot in configs.items():
                db.execute("DELETE FROM config WHERE service = ?", (service,))
                db.executemany(
                    "INSERT INTO config VALUES (?, ?, ?)",
                    [(service, scope, body) for scope, body in snapshot.items()],
                )
            if "dynamodb" in configs:  # items of deleted tables go with them
                db.execute(
                    "DELETE FROM ddb_items WHERE scope NOT IN (SELECT scope FROM config WHERE service = 'dynamodb')"
                )
            if "sqs" in configs:
                db.execute(
                    "DELETE FROM sqs_messages WHERE queue NOT IN (SELECT scope FROM config WHERE service = 'sqs')"
                )
        # Files the new rows still name stay (a key re-stored for a tag change keeps its body).
        for versions in s3_keys.values():
            dropped -= _blobs_of_versions(versions)
        for uploads in s3_uploads.values():
            dropped -= {part["blob"] for upload in uploads.values() for part in upload["parts"]}
        return dropped

    def _apply_bucket_request(self, db: sqlite3.Connection, request: dict[str, Any]) -> set[str]:
        """One bucket-level request: a setting stored or removed, or the whole bucket gone."""
        bucket, subresource = request["bucket"], request["subresource"]
        if request["kind"] == "put":
            meta = {k: request[k] for k in ("method", "path", "headers")}
            db.execute(
                "INSERT OR REPLACE INTO s3_bucket_requests VALUES (?, ?, ?, ?)",
                (bucket, subresource, json.dumps(meta), request["body"]),
            )
            return set()
        if request["kind"] == "delete":
            db.execute(
                "DELETE FROM s3_bucket_requests WHERE bucket = ? AND subresource = ?", (bucket, subresource)
            )
            return set()
        dropped: set[str] = set()  # the bucket was deleted (it was empty: S3 refuses otherwise)
        for (text,) in db.execute("SELECT versions FROM s3_keys WHERE bucket = ?", (bucket,)):
            dropped |= _blobs_of_versions(_loads(text))
        for (text,) in db.execute("SELECT upload FROM s3_uploads WHERE bucket = ?", (bucket,)):
            dropped |= {part["blob"] for part in _loads(text)["parts"]}
        for table in ("s3_bucket_requests", "s3_keys", "s3_uploads"):
            db.execute(f"DELETE FROM {table} WHERE bucket = ?", (bucket,))
        return dropped

    def _touched_keys(self, changes: Changes) -> set[tuple[str, str]]:
        """(bucket, key) of every S3 key the request may have changed."""
        from moto.s3.models import s3_backends

        touched = set(changes.s3_keys)
        for bucket_name in changes.s3_buckets_resync:
            touched |= {(bucket_name, key) for key in self._stored_keys(bucket_name)}
            for account in list(s3_backends.keys()):
                bucket = s3_backends[account]["aws"].buckets.get(bucket_name)
                if bucket is not None:
                    touched |= {(bucket_name, key) for key in list(bucket.keys.keys())}
        return touched

    def _store_bodies(self, touched: set[tuple[str, str]], changes: Changes) -> None:
        """Write the bodies of the touched keys' versions and of the changed uploads' parts to files."""
        from moto.s3.models import FakeKey, s3_backends

        for account in list(s3_backends.keys()):
            buckets = s3_backends[account]["aws"].buckets
            for bucket_name, key_name in touched:
                bucket = buckets.get(bucket_name)
                for version in list(bucket.keys.getlist(key_name, [])) if bucket is not None else []:
                    if isinstance(version, FakeKey):
                        self._stored_body(version)
            for bucket_name in changes.s3_uploads | changes.s3_buckets_resync:
                bucket = buckets.get(bucket_name)
                for upload in list(bucket.multiparts.values()) if bucket is not None else []:
                    for part in list(upload.parts.values()):
                        self._stored_body(part)

    def _s3_key_rows(self, touched: set[tuple[str, str]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        from moto.s3.models import s3_backends

        rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for account in list(s3_backends.keys()):
            backend = s3_backends[account]["aws"]
            for bucket_name, key_name in touched:
                bucket = backend.buckets.get(bucket_name)
                versions = list(bucket.keys.getlist(key_name, [])) if bucket is not None else []
                rows[(account, bucket_name, key_name)] = [self._version_record(backend, v) for v in versions]
        return rows

    def _stored_keys(self, bucket: str) -> list[str]:
        with self._lock:
            assert self._db is not None
            return [row[0] for row in self._db.execute("SELECT key FROM s3_keys WHERE bucket = ?", (bucket,))]

    def _s3_upload_rows(self, changes: Changes) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        from moto.s3.models import s3_backends

        rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for account in list(s3_backends.keys()):
            backend = s3_backends[account]["aws"]
            for bucket_name in changes.s3_uploads | changes.s3_buckets_resync:
                bucket = backend.buckets.get(bucket_name)
                uploads = dict(bucket.multiparts) if bucket is not None else {}
                rows[(account, bucket_name)] = {
                    upload_id: {
                        "key_name": upload.key_name,
                        "metadata": dict(upload.metadata or {}),
                        "storage": upload.storage,
                        "tags": upload.tags,
                        "sse_encryption": upload.sse_encryption,
                        "kms_key_id": upload.kms_key_id,
                        "parts": [
                            {
                                "number": number,
                                "etag": upload.parts[number].etag.strip('"'),
                                "size": upload.parts[number].contentsize,
                                "blob": self._stored_body(upload.parts[number]).name,
                            }
                            for number in list(upload.partlist)
                        ],
                    }
                    for upload_id, upload in uploads.items()
                }
        return rows

    def _version_record(self, backend: Any, version: Any) -> dict[str, Any]:
        from moto.s3.models import FakeDeleteMarker

        if isinstance(version, FakeDeleteMarker):
            return {
                "delete_marker": True,
                "version_id": version._version_id,
                "last_modified": version.last_modified,
            }
        body = self._stored_body(version)
        multipart = version.multipart
        return {
            "version_id": version._version_id,
            "is_versioned": version._is_versioned,
            "etag": version.etag.strip('"'),
            "size": version.contentsize,
            "last_modified": _time(version.last_modified),
            "metadata": dict(version.metadata),
            "storage": version._storage_class,
            "expiry": _time(version._expiry),
            "tags": backend.tagger.get_tag_dict_for_resource(version.arn),
            "blob": body.name,
            "multipart": None
            if multipart is None
            else {
                "id": multipart.id,
                "parts": [
                    [number, multipart.parts[number].etag.strip('"'), multipart.parts[number].contentsize]
                    for number in list(multipart.partlist)
                ],
            },
            **{name: getattr(version, name) for name in _KEY_FIELDS},
        }

    def _stored_body(self, key: Any) -> BlobBuffer:
        """The file holding ``key``'s body, written now if moto still holds it; moto then reads the file."""
        with key.lock:
            if isinstance(key._value_buffer, BlobBuffer):
                return key._value_buffer
            name = uuid.uuid4().hex
            path = self._blob_path(name)
            private_directory(path.parent)
            partial = path.with_suffix(".partial")
            source = key._value_buffer
            source.seek(0)
            descriptor = open_private(partial, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(descriptor, "wb") as stream:
                shutil.copyfileobj(source, stream, _COPY_CHUNK)
            partial.replace(path)
            stored = BlobBuffer(str(path), 0, key.contentsize)
            key._value_buffer = stored
            source.close()
            _share_parts(key, stored)
            return stored

    def _blob_path(self, name: str) -> Path:
        return self.blobs / name[:2] / name

    def _blob_file(self, name: str) -> str:
        return f"{self._blobs_text}/{name[:2]}/{name}"

    # -- restoring ----------------------------------------------------------------------------------

    def restore(self, send: Replay) -> dict[str, int]:
        """Rebuild moto's state from the store (moto just reset, nothing recording); counts restored.

        ``send`` replays a bucket setting's request on the server being restored (no socket needed).
        """
        assert self._db is not None
        db = self._db
        counts = {"bucket settings": self._replay_bucket_requests(send)}
        configs: dict[str, dict[str, Any]] = {}
        for service, scope, body in db.execute("SELECT service, scope, body FROM config"):
            configs.setdefault(service, {})[scope] = _loads(body)
        _restore_tables(configs.get("dynamodb", {}))
        _restore_queues(configs.get("sqs", {}))
        _restore_topics(configs.get("sns", {}))
        _restore_rules(configs.get("events", {}))
        counts["objects"] = self._restore_keys(db)
        counts["uploads"] = self._restore_uploads(db)
        counts["items"] = _restore_items(db)
        counts["messages"] = _restore_messages(db)
        self._collect_garbage_later(time.time())
        return counts

    def _replay_bucket_requests(self, send: Replay) -> int:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT request, body FROM s3_bucket_requests ORDER BY subresource != '', bucket"
        ).fetchall()
        for text, body in rows:
            request = json.loads(text)
            status, answer = send(request["method"], request["path"], request["headers"], body)
            if status >= 400:
                logger.warning(
                    "restoring the bucket setting %s %s failed: %d %s",
                    request["method"],
                    request["path"],
                    status,
                    answer[:300].decode("utf-8", "replace"),
                )
        return len(rows)

    def _restore_keys(self, db: sqlite3.Connection) -> int:
        from moto.s3.models import s3_backends

        restored = 0
        buckets: dict[tuple[str, str], tuple[Any, Any, _KeyFactory] | None] = {}
        for account, bucket_name, key_name, text in db.execute(
            "SELECT account, bucket, key, versions FROM s3_keys"
        ):
            if (account, bucket_name) not in buckets:
                backend = s3_backends[account]["aws"]
                bucket = backend.buckets.get(bucket_name)
                made = None if bucket is None else (backend, bucket, _KeyFactory(backend, bucket))
                buckets[(account, bucket_name)] = made
                if bucket is None:
                    logger.warning("objects of bucket %s not restored: the bucket is gone", bucket_name)
            found = buckets[(account, bucket_name)]
            if found is None:
                continue
            backend, bucket, make = found
            versions = [self._restored_version(backend, make, key_name, record) for record in _loads(text)]
            dict.__setitem__(bucket.keys, key_name, versions)  # setlist, without disposing anything
            restored += 1
        for found in buckets.values():
            if found is not None:
                found[2].close()
        return restored

    def _restored_version(
        self, backend: Any, make: _KeyFactory, key_name: str, record: dict[str, Any]
    ) -> Any:
        from moto.s3.models import FakeDeleteMarker, FakeMultipart

        if record.get("delete_marker"):
            marker: Any = FakeDeleteMarker(make.key(key_name))
            marker._version_id = record["version_id"]
            marker.last_modified = _parse_time(record["last_modified"])
            return marker
        key = make.key(key_name)
        for name in _KEY_FIELDS:
            setattr(key, name, record[name])
        key._etag = record["etag"]
        key._version_id = record["version_id"]
        key._is_versioned = record["is_versioned"]
        key._storage_class = record["storage"]
        key.last_modified = _parse_time(record["last_modified"])
        key._expiry = _parse_time(record["expiry"])
        key._metadata.update(record["metadata"])
        key.contentsize = record["size"]
        key._value_buffer = BlobBuffer(self._blob_file(record["blob"]), 0, record["size"])
        if record["multipart"] is not None:
            no_metadata: Any = {}
            multipart: Any = FakeMultipart(
                key_name, no_metadata, account_id=backend.account_id, region_name=make.region
            )
            multipart.id = record["multipart"]["id"]
            for number, etag, size in record["multipart"]["parts"]:
                part = make.key(number)
                part._etag, part.contentsize = etag, size
                multipart.parts[number] = part
                multipart.partlist.append(number)
            key.multipart = multipart
            _share_parts(key, key._value_buffer)
        if record["tags"]:
            backend.tagger.tag_resource(key.arn, [{"Key": k, "Value": v} for k, v in record["tags"].items()])
        return key

    def _restore_uploads(self, db: sqlite3.Connection) -> int:
        from moto.s3.models import FakeKey, FakeMultipart, s3_backends

        restored = 0
        for account, bucket_name, upload_id, text in db.execute(
            "SELECT account, bucket, upload_id, upload FROM s3_uploads"
        ):
            backend = s3_backends[account]["aws"]
            bucket = backend.buckets.get(bucket_name)
            if bucket is None:
                continue
            record = _loads(text)
            upload = FakeMultipart(
                record["key_name"],
                record["metadata"],
                account_id=account,
                region_name=bucket.region_name,
                storage=record["storage"],
                tags=record["tags"],
                sse_encryption=record["sse_encryption"],
                kms_key_id=record["kms_key_id"],
            )
            upload.id = upload_id
            for part in record["parts"]:
                key: Any = FakeKey(
                    part["number"],
                    b"",
                    account_id=account,
                    region_name=bucket.region_name,
                    etag=part["etag"],
                    encryption=record["sse_encryption"],
                    kms_key_id=record["kms_key_id"],
                )
                key.contentsize = part["size"]
                key._value_buffer.close()
                key._value_buffer = BlobBuffer(self._blob_file(part["blob"]), 0, part["size"])
                upload.parts[part["number"]] = key
                upload.partlist.append(part["number"])
            bucket.multiparts[upload_id] = upload
            restored += 1
        return restored

    def orphans_collected(self, timeout: float | None = None) -> int:
        """Wait for the collection of orphan bodies the last ``restore`` started; how many it removed."""
        if self._collector is not None:
            self._collector.join(timeout)
        return self.orphans_removed

    def _collect_garbage_later(self, before: float) -> None:
        """Collect orphan bodies on a thread of its own, once the store serves (no part of a restart)."""
        path = self.directory / DATABASE

        def collect() -> None:
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
                try:
                    self.orphans_removed = self._collect_garbage(db, before)
                finally:
                    db.close()
            except (sqlite3.Error, OSError) as exc:
                logger.warning("could not remove the bodies no object names in %s: %s", self.blobs, exc)
                return
            if self.orphans_removed:
                logger.info("%d body files no object named removed from %s", self.orphans_removed, self.blobs)

        self._collector = threading.Thread(target=collect, name="state-orphans", daemon=True)
        self._collector.start()

    def _collect_garbage(self, db: sqlite3.Connection, before: float) -> int:
        """Delete body files older than ``before`` that no row names: bodies of requests that never
        completed, partial writes. A file written since (by a request being served) is never a candidate."""
        named: set[str] = set()
        for (text,) in db.execute("SELECT versions FROM s3_keys"):
            named |= _blobs_of_versions(_loads(text))
        for (text,) in db.execute("SELECT upload FROM s3_uploads"):
            named |= {part["blob"] for part in _loads(text)["parts"]}
        removed = 0
        for path in self.blobs.glob("*/*"):
            if path.name in named:
                continue
            try:
                if path.stat().st_mtime < before:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


# -- S3 -----------------------------------------------------------------------------------------------

# FakeKey attributes stored as they are (plain values).
_KEY_FIELDS = (
    "encryption",
    "kms_key_id",
    "bucket_key_enabled",
    "lock_mode",
    "lock_legal_status",
    "lock_until",
    "checksum_algorithm",
    "checksum_value",
    "checksum_type",
    "checksum_parts",
    "website_redirect_location",
)


class _KeyFactory:
    """FakeKeys of one bucket, copied from one built the slow way.

    moto's FakeKey constructor builds a buffer, an ACL and a state machine per key (a tenth of a
    millisecond); a restart rebuilds every stored object, so keys are cloned from a prototype
    and given their own mutable parts instead.
    """

    def __init__(self, backend: Any, bucket: Any) -> None:
        from moto.s3.models import FakeKey

        self.region = bucket.region_name
        self._prototype = FakeKey(
            "", b"", account_id=backend.account_id, region_name=self.region, bucket_name=bucket.name
        )
        self._fields = dict(self._prototype.__dict__)

    def key(self, name: Any) -> Any:
        from moto.s3.models import FakeKey
        from moto.utilities.utils import LowercaseDict

        key: Any = FakeKey.__new__(FakeKey)
        key.__dict__.update(self._fields)
        key.name = name
        key.lock = threading.RLock()
        key._metadata = LowercaseDict()
        key.multipart = None
        key.disposed = False
        return key

    def close(self) -> None:
        self._prototype.dispose()


def _blobs_of_versions(versions: list[dict[str, Any]]) -> set[str]:
    return {version["blob"] for version in versions if "blob" in version}


def _share_parts(key: Any, body: BlobBuffer) -> None:
    """Point a completed multipart object's parts at slices of its body, or forget them.

    moto keeps the parts of a completed upload (GetObject with PartNumber, HEAD's parts count,
    an idempotent retry of CompleteMultipartUpload). Their bytes are the object's when every
    uploaded part went into it in order; otherwise only the upload id is kept.
    """
    multipart = key.multipart
    if multipart is None:
        return
    parts = [multipart.parts[number] for number in multipart.partlist if number in multipart.parts]
    if sum(part.contentsize for part in parts) != body.size:
        multipart.parts, multipart.partlist = {}, []
        return
    offset = 0
    for part in parts:
        with contextlib.suppress(Exception):
            part._value_buffer.close()
        part._value_buffer = BlobBuffer(body.path, offset, part.contentsize)
        offset += part.contentsize


# -- DynamoDB -----------------------------------------------------------------------------------------


def _item_key(hash_key: Any, range_key: Any) -> str:
    return json.dumps(
        [hash_key.to_json(), None if range_key is None else range_key.to_json()], sort_keys=True
    )


def _attribute(value: Any) -> dict[str, Any]:
    """A DynamoType as DynamoDB JSON, as moto holds it (a binary is base64 text, or bytes when nested)."""
    if value.type == "M":
        return {"M": {name: _attribute(item) for name, item in value.value.items()}}
    if value.type == "L":
        return {"L": [_attribute(item) for item in value.value]}
    return {value.type: value.value}


def _ddb_item_rows(changes: Changes) -> list[tuple[str, str, str | None]]:
    from moto.dynamodb.models import dynamodb_backends

    rows: list[tuple[str, str, str | None]] = []
    for account, region, table_name, hash_key, range_key in changes.ddb_items:
        table = dynamodb_backends[account][region].tables.get(table_name)
        item = None if table is None else table.get_item(hash_key, range_key)
        attributes = (
            None if item is None else _dumps({name: _attribute(value) for name, value in item.attrs.items()})
        )
        rows.append((f"{account}/{region}/{table_name}", _item_key(hash_key, range_key), attributes))
    return rows


def _table_configs() -> dict[str, str]:
    from moto.dynamodb.models import dynamodb_backends

    configs: dict[str, str] = {}
    for account, region, backend in _regional(dynamodb_backends):
        for table in list(backend.tables.values()):
            configs[f"{account}/{region}/{table.name}"] = _dumps(
                {
                    "schema": table.schema,
                    "attr": table.attr,
                    "throughput": {
                        k: table.throughput[k] for k in ("ReadCapacityUnits", "WriteCapacityUnits")
                    }
                    if table.billing_mode != "PAY_PER_REQUEST"
                    else None,
                    "billing_mode": table.billing_mode,
                    "indexes": [index.describe() for index in table.indexes],
                    "global_indexes": [
                        {
                            "IndexName": index.name,
                            "KeySchema": index.schema,
                            "Projection": index.projection,
                            **(
                                {
                                    "ProvisionedThroughput": {
                                        k: index.throughput[k]
                                        for k in ("ReadCapacityUnits", "WriteCapacityUnits")
                                    }
                                }
                                if table.billing_mode != "PAY_PER_REQUEST"
                                else {}
                            ),
                        }
                        for index in table.global_indexes
                    ],
                    "streams": table.stream_specification
                    if (table.stream_specification or {}).get("StreamEnabled")
                    else None,
                    "sse_specification": table.sse_specification,
                    "tags": table.tags,
                    "deletion_protection_enabled": table.deletion_protection_enabled,
                    "ttl": table.ttl,
                }
            )
    return configs


def _restore_tables(configs: dict[str, Any]) -> None:
    from moto.dynamodb.models import dynamodb_backends

    for scope, config in configs.items():
        account, region, name = scope.split("/", 2)
        table = dynamodb_backends[account][region].create_table(
            name,
            schema=config["schema"],
            throughput=config["throughput"],
            attr=config["attr"],
            global_indexes=config["global_indexes"],
            indexes=config["indexes"],
            streams=config["streams"],
            billing_mode=config["billing_mode"],
            sse_specification=config["sse_specification"],
            tags=config["tags"],
            deletion_protection_enabled=config["deletion_protection_enabled"],
            warm_throughput=None,
        )
        table.ttl = config["ttl"]


def _dynamo_type(document: dict[str, Any]) -> Any:
    """``DynamoType(document)`` without its constructor's per-value checks (a third of a restart)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    ((kind, value),) = document.items()
    made: Any = DynamoType.__new__(DynamoType)
    made.type = kind
    if kind == "M":
        value = {name: _dynamo_type(item) for name, item in value.items()}
    elif kind == "L":
        value = [_dynamo_type(item) for item in value]
    made.value = value
    return made


def _restore_items(db: sqlite3.Connection) -> int:
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    restored = 0
    tables: dict[str, Any] = {}
    for scope, key, text in db.execute("SELECT scope, key, item FROM ddb_items"):
        table = tables.get(scope)
        if table is None:
            account, region, name = scope.split("/", 2)
            table = tables[scope] = dynamodb_backends[account][region].tables[name]
        hash_json, range_json = _loads(key)
        hash_key = _dynamo_type(hash_json)
        range_key = None if range_json is None else _dynamo_type(range_json)
        # Item() checks the 400 KB limit attribute by attribute (quadratic); a stored item passed it.
        item: Any = Item.__new__(Item)
        item.hash_key, item.range_key = hash_key, range_key
        item.attrs = LimitedSizeDict()
        dict.update(item.attrs, {name: _dynamo_type(value) for name, value in _loads(text).items()})
        if range_key is None:
            table.items[hash_key] = item
        else:
            table.items[hash_key][range_key] = item
        restored += 1
    return restored


# -- SQS ----------------------------------------------------------------------------------------------

_QUEUE_ATTRIBUTES_NOT_SET = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "QueueArn",
    }
)


def _queue_configs() -> dict[str, str]:
    from moto.sqs.models import sqs_backends

    configs: dict[str, str] = {}
    for account, region, backend in _regional(sqs_backends):
        for queue in list(backend.queues.values()):
            attributes = {
                name: value
                for name, value in queue.attributes.items()
                if name not in _QUEUE_ATTRIBUTES_NOT_SET and value is not None
            }
            configs[f"{account}/{region}/{queue.name}"] = _dumps(
                {"attributes": attributes, "tags": queue.tags}
            )
    return configs


def _restore_queues(configs: dict[str, Any]) -> None:
    from moto.sqs.models import sqs_backends

    pending = dict(configs)
    while pending:  # dead-letter queues before the queues that name them
        progressed = False
        for scope, config in list(pending.items()):
            account, region, name = scope.split("/", 2)
            backend = sqs_backends[account][region]
            redrive = config["attributes"].get("RedrivePolicy")
            target = json.loads(redrive).get("deadLetterTargetArn", "") if redrive else ""
            if (
                target
                and target.rsplit(":", 1)[-1] not in backend.queues
                and any(s.endswith("/" + target.rsplit(":", 1)[-1]) for s in pending)
            ):
                continue
            backend.create_queue(name, tags=config["tags"] or None, **config["attributes"])
            del pending[scope]
            progressed = True
        if not progressed:
            raise MlambdaLocalError(
                f"queues with circular dead-letter targets cannot be restored: {sorted(pending)}"
            )


def _message_record(message: Any) -> dict[str, Any]:
    return {
        "body": message.body,
        "attributes": _tag_bytes(message.message_attributes),
        "system": _tag_bytes(message.system_attributes),
        "sender": message.sender_id,
        "sent": message.sent_timestamp,
        "first_receive": message.approximate_first_receive_timestamp,
        "receives": message.approximate_receive_count,
        "deduplication_id": message.deduplication_id,
        "group_id": message.group_id,
        "sequence_number": message.sequence_number,
        "visible_at": message.visible_at,
        "delayed_until": message.delayed_until,
        # The current receipt handle and the newest old ones: a delete with any of them still works.
        "handles": [h for h in [message.receipt_handle, *message._old_receipt_handles[-9:]] if h is not None],
    }


def _restore_messages(db: sqlite3.Connection) -> int:
    from moto.sqs.models import Message, sqs_backends

    now = time.time() * 1000
    restored = 0
    queues: dict[str, Any] = {}
    for message_id, queue_scope, text in db.execute(
        "SELECT id, queue, message FROM sqs_messages ORDER BY rowid"
    ):
        if queue_scope not in queues:
            account, region, name = queue_scope.split("/", 2)
            queues[queue_scope] = sqs_backends[account][region].queues.get(name)
        queue = queues[queue_scope]
        if queue is None:
            continue
        record = _loads(text)
        message = Message(message_id, record["body"], _untag_bytes(record["system"]))
        message.message_attributes = _untag_bytes(record["attributes"])
        message.sender_id = record["sender"]
        message.sent_timestamp = record["sent"]
        message.approximate_first_receive_timestamp = record["first_receive"]
        message.approximate_receive_count = record["receives"]
        message.deduplication_id = record["deduplication_id"]
        message.group_id = record["group_id"]
        message.sequence_number = record["sequence_number"]
        # In flight at the crash: its consumer died with the process, so it is visible again now.
        message.visible_at = min(record["visible_at"], now)
        message.delayed_until = record["delayed_until"]
        handles = record["handles"]
        message.receipt_handle = handles[0] if handles else None
        message._old_receipt_handles = handles[1:]
        queue._messages.append(message)
        moto_patches.index_restored_message(queue, message)
        restored += 1
    return restored


# -- SNS ----------------------------------------------------------------------------------------------

_SUBSCRIPTION_SETTINGS = (
    "RawMessageDelivery",
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RedrivePolicy",
)


def _topic_configs() -> dict[str, str]:
    from moto.sns.models import sns_backends

    configs: dict[str, str] = {}
    for account, region, backend in _regional(sns_backends):
        topics = [
            {
                "name": topic.name,
                "attributes": {
                    "DisplayName": topic.display_name,
                    "DeliveryPolicy": topic.delivery_policy,
                    "KmsMasterKeyId": topic.kms_master_key_id,
                    "Policy": topic.policy,
                    "FifoTopic": "true" if topic.fifo_topic else "",
                    "ContentBasedDeduplication": "true" if topic.content_based_deduplication else "",
                },
                "tags": topic._tags,
            }
            for topic in list(backend.topics.values())
        ]
        subscriptions = [
            {
                "arn": subscription.arn,
                "topic_arn": subscription.topic.arn,
                "protocol": subscription.protocol,
                "endpoint": subscription.endpoint,
                "confirmed": subscription.confirmed,
                "attributes": {
                    k: v for k, v in subscription.attributes.items() if k in _SUBSCRIPTION_SETTINGS
                },
            }
            for subscription in list(backend.subscriptions.values())
        ]
        if topics or subscriptions:
            configs[f"{account}/{region}"] = _dumps({"topics": topics, "subscriptions": subscriptions})
    return configs


def _restore_topics(configs: dict[str, Any]) -> None:
    from moto.sns.models import sns_backends

    for scope, config in configs.items():
        account, region = scope.split("/", 1)
        backend = sns_backends[account][region]
        for topic in config["topics"]:
            attributes = {name: value for name, value in topic["attributes"].items() if value}
            backend.create_topic(topic["name"], attributes=attributes, tags=topic["tags"] or None)
        for record in config["subscriptions"]:
            subscription = backend.subscribe(record["topic_arn"], record["endpoint"], record["protocol"])
            backend.subscriptions.pop(subscription.arn, None)
            subscription.arn = record["arn"]
            subscription.confirmed = record["confirmed"]
            backend.subscriptions[subscription.arn] = subscription
            for name, value in record["attributes"].items():
                backend.set_subscription_attributes(subscription.arn, name, value)


# -- EventBridge --------------------------------------------------------------------------------------


def _rule_configs() -> dict[str, str]:
    from moto.events.models import events_backends

    configs: dict[str, str] = {}
    for account, region, backend in _regional(events_backends):
        buses = [
            {
                "name": bus.name,
                "description": bus.description,
                "rules": [
                    {
                        "name": rule.name,
                        "description": rule.description,
                        "event_pattern": rule.event_pattern.dump(),
                        "schedule": rule.scheduled_expression,
                        "role_arn": rule.role_arn,
                        "state": rule.state,
                        "targets": rule.targets,
                        "tags": backend.tagger.list_tags_for_resource(rule.arn)["Tags"],
                    }
                    for rule in list(bus.rules.values())
                ],
            }
            for bus in list(backend.event_buses.values())
        ]
        if any(bus["rules"] or bus["name"] != "default" for bus in buses):
            configs[f"{account}/{region}"] = _dumps({"buses": buses})
    return configs


def _restore_rules(configs: dict[str, Any]) -> None:
    from moto.events.models import events_backends

    for scope, config in configs.items():
        account, region = scope.split("/", 1)
        backend = events_backends[account][region]
        for bus in config["buses"]:
            if bus["name"] not in backend.event_buses:
                backend.create_event_bus(bus["name"], description=bus["description"])
            for rule in bus["rules"]:
                created = backend.put_rule(
                    rule["name"],
                    description=rule["description"],
                    event_bus_arn=bus["name"],
                    event_pattern=rule["event_pattern"],
                    role_arn=rule["role_arn"],
                    scheduled_expression=rule["schedule"],
                    state=rule["state"],
                    tags=rule["tags"] or None,
                )
                created.targets = rule["targets"]


_CONFIG_SNAPSHOTS = {
    "dynamodb": _table_configs,
    "sqs": _queue_configs,
    "sns": _topic_configs,
    "events": _rule_configs,
}
