"""What the local cloud changes in moto's models: SQS made thread-safe and cheap, and change tracking.

moto's models are plain Python objects shared by every request thread. These things in them
are wrong for a cloud that many threads use for hours:

- **SQS is not thread-safe.** Two concurrent ReceiveMessage calls can both see a message as
  visible and both deliver it, and a DeleteMessage rebuilds the message list, so a concurrent
  delete or send can be undone. The front server (``moto_server``) therefore runs SQS requests
  one at a time under ``SQS_LOCK``; messages that S3 notifications, SNS or EventBridge add from
  other request threads take the same lock (``Queue.add_message``).
- **SQS costs grow with the queue.** A send read ``queue.attributes``, which counts the visible,
  delayed and in-flight messages (three scans of the queue); a receive did that three times per
  received message (the retention check) and a delete scanned every message's receipt handles.
  Sends and retention checks read the one attribute they need; deletes find the message
  through an index of receipt handles.
- **S3 keys' etags are computed without their lock**, which matters once persisting reads keys
  that another request is still answering for.
- **A completed multipart upload is built in memory**, twice (a bytearray of every part, then
  its bytes) and a third time in the key's in-memory buffer before it spills to disk: 600 MB of
  the cloud's memory for a 200 MB upload. The parts are copied into a temporary file instead,
  which the key keeps as its buffer (persistence then moves it to the store's files).
- **A request lists its response class's methods** to find the action: done once per class.
- **Nothing says what a request changed.** Persistence (``persistence``) needs to write what
  each request changed before the response leaves. Hooks on the models record the DynamoDB
  items and SQS messages a request touched, side effects included (an S3 upload notifying a
  queue, a receive moving a message to its DLQ), in the request thread's ``Changes``.

``install()`` applies all of this once per process (moto's backends are process-global).
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

SQS_LOCK = threading.RLock()
# Notified whenever a message is added or made visible: long polls wait on it (moto_server).
SQS_ARRIVALS = threading.Condition(SQS_LOCK)
# Receipt handles of deleted messages remembered, so a second delete with one succeeds as on SQS.
DELETED_HANDLES_KEPT = 100_000

QueueRef = tuple[str, str, str]  # (account, region, queue name)
ItemRef = tuple[str, str, str, Any, Any]  # (account, region, table, hash DynamoType, range DynamoType | None)


@dataclass
class Changes:
    """What one request changed; filled by the hooks and the front server, persisted before the response."""

    ddb_items: set[ItemRef] = field(default_factory=set)
    sqs_messages: dict[str, tuple[QueueRef, Any]] = field(default_factory=dict)
    sqs_deleted: set[str] = field(default_factory=set)
    s3_keys: set[tuple[str, str]] = field(default_factory=set)  # (bucket, key)
    s3_uploads: set[str] = field(default_factory=set)  # buckets whose multipart uploads changed
    s3_buckets_resync: set[str] = field(default_factory=set)  # buckets changed in a way the path does not say
    s3_bucket_requests: list[dict[str, Any]] = field(default_factory=list)
    configs: set[str] = field(default_factory=set)  # services whose resource configuration changed
    holds_sqs_lock: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.ddb_items
            or self.sqs_messages
            or self.sqs_deleted
            or self.s3_keys
            or self.s3_uploads
            or self.s3_buckets_resync
            or self.s3_bucket_requests
            or self.configs
        )


class _Tracker(threading.local):
    changes: Changes | None = None


TRACKER = _Tracker()


def begin() -> Changes:
    """Start recording this thread's changes (one request)."""
    TRACKER.changes = Changes()
    return TRACKER.changes


def end() -> None:
    """Stop recording, and release the SQS lock if a side effect took it."""
    changes, TRACKER.changes = TRACKER.changes, None
    if changes is not None and changes.holds_sqs_lock:
        changes.holds_sqs_lock = False
        SQS_LOCK.release()


def _current() -> Changes | None:
    return TRACKER.changes


def _hold_sqs_lock() -> None:
    """Serialise a queue change made outside an SQS request, until that request's changes are persisted.

    Held to the end of the request, so no consumer receives a message that a crash could still lose.
    """
    changes = _current()
    if changes is None:
        return
    if not changes.holds_sqs_lock:
        SQS_LOCK.acquire()
        changes.holds_sqs_lock = True


class _BoundedHandles:
    """moto's ``Queue.deleted_messages`` (a set that grew forever), keeping the newest handles only."""

    def __init__(self, limit: int = DELETED_HANDLES_KEPT) -> None:
        self._handles: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, handle: object) -> bool:
        return handle in self._handles

    def update(self, handles: Iterable[str | None]) -> None:
        for handle in handles:
            if handle is not None:
                self._handles[handle] = None
        while len(self._handles) > self._limit:
            self._handles.popitem(last=False)


# Receipt handle -> message, for every message still in a queue (DeleteMessage in O(1)).
_MESSAGES_BY_HANDLE: dict[str, Any] = {}


def queue_ref(queue: Any) -> QueueRef:
    return (queue.account_id, queue.region, queue.name)


def _record_message(queue: Any, message: Any) -> None:
    message.mlambda_queue = queue_ref(queue)  # a tuple: deep copies of received messages stay cheap
    changes = _current()
    if changes is not None:
        changes.sqs_messages[message.id] = (message.mlambda_queue, message)
        changes.sqs_deleted.discard(message.id)


def _forget_message(message: Any) -> None:
    for handle in message.all_receipt_handles:
        if handle is not None:
            _MESSAGES_BY_HANDLE.pop(handle, None)
    changes = _current()
    if changes is not None:
        changes.sqs_messages.pop(message.id, None)
        changes.sqs_deleted.add(message.id)


def _patch_sqs() -> None:
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs.exceptions import ReceiptHandleIsInvalid
    from moto.sqs.models import Message, Queue, SQSBackend

    sending = threading.local()
    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        count: Callable[[Any], int] = getattr(Queue, name).fget

        def counted(self: Any, count: Callable[[Any], int] = count) -> int:
            # Each count scans the whole queue, and a send reads them all through
            # ``queue.attributes`` for one flag: a send does not count.
            return 0 if getattr(sending, "on", False) else count(self)

        setattr(Queue, name, property(counted))

    original_send = SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        _hold_sqs_lock()
        with SQS_LOCK:
            sending.on = True
            try:
                return original_send(self, *args, **kwargs)
            finally:
                sending.on = False

    SQSBackend.send_message = send_message  # type: ignore[method-assign]

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    def visible_messages(self: Any) -> list[Any]:
        now = unix_time_millis()  # once, not twice per message
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    Queue.messages = property(visible_messages)  # type: ignore[method-assign,assignment]

    original_add = Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        _hold_sqs_lock()
        with SQS_LOCK:
            if not isinstance(self.deleted_messages, _BoundedHandles):
                self.deleted_messages = _BoundedHandles()
            known = len(self._messages)
            original_add(self, message)
            if len(self._messages) > known and self._messages[-1] is message:
                _record_message(self, message)
            SQS_ARRIVALS.notify_all()

    Queue.add_message = add_message  # type: ignore[method-assign]

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: SQS accepts the second delete
        message = _MESSAGES_BY_HANDLE.get(receipt_handle)
        if message is None or getattr(message, "mlambda_queue", None) != queue_ref(self):
            raise ReceiptHandleIsInvalid()
        self._messages.remove(message)
        self.pending_messages.discard(message)
        if not isinstance(self.deleted_messages, _BoundedHandles):
            self.deleted_messages = _BoundedHandles()
        self.deleted_messages.update(message.all_receipt_handles)
        _forget_message(message)

    Queue.delete_message = delete_message  # type: ignore[method-assign]

    original_mark_received = Message.mark_received

    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        original_mark_received(self, visibility_timeout)
        _MESSAGES_BY_HANDLE[self.receipt_handle] = self
        _record_changed(self)

    Message.mark_received = mark_received  # type: ignore[method-assign]

    original_change_visibility = Message.change_visibility

    def change_visibility(self: Any, visibility_timeout: int) -> None:
        original_change_visibility(self, visibility_timeout)
        _record_changed(self)
        if int(visibility_timeout) == 0:
            with SQS_ARRIVALS:
                SQS_ARRIVALS.notify_all()

    Message.change_visibility = change_visibility  # type: ignore[method-assign]

    original_purge = SQSBackend.purge_queue

    def purge_queue(self: Any, queue_name: str) -> None:
        queue = self.get_queue(queue_name)
        doomed = list(queue._messages)
        original_purge(self, queue_name)
        for message in doomed:
            _forget_message(message)

    SQSBackend.purge_queue = purge_queue  # type: ignore[method-assign]

    original_delete_queue = SQSBackend.delete_queue

    def delete_queue(self: Any, queue_name: str) -> None:
        queue = self.get_queue(queue_name)
        doomed = list(queue._messages)
        original_delete_queue(self, queue_name)
        for message in doomed:
            _forget_message(message)

    SQSBackend.delete_queue = delete_queue  # type: ignore[method-assign]


def _record_changed(message: Any) -> None:
    ref = getattr(message, "mlambda_queue", None)
    changes = _current()
    if ref is not None and changes is not None:
        changes.sqs_messages[message.id] = (ref, message)


def _patch_s3() -> None:
    """An S3 key's etag is computed under its lock: persisting reads keys other requests are answering.

    moto computes an etag lazily by seeking through the key's buffer; two threads doing it at
    once (a request answering, another persisting the same multipart upload) interleave their
    seeks and cache a wrong etag. The key's lock becomes re-entrant, since the ranged-GET server
    holds it while reading the etag.
    """
    from moto.s3.models import FakeKey

    original_init = FakeKey.__init__

    def init_with_reentrant_lock(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.lock = threading.RLock()

    FakeKey.__init__ = init_with_reentrant_lock  # type: ignore[method-assign]

    original_setstate = FakeKey.__setstate__

    def setstate_with_reentrant_lock(self: Any, state: dict[str, Any]) -> None:
        original_setstate(self, state)
        self.lock = threading.RLock()

    FakeKey.__setstate__ = setstate_with_reentrant_lock  # type: ignore[method-assign]

    etag: Callable[[Any], str] = FakeKey.etag.fget  # type: ignore[attr-defined]

    def locked_etag(self: Any) -> str:
        if self._etag is not None:
            return f'"{self._etag}"'
        with self.lock:
            return etag(self)

    FakeKey.etag = property(locked_etag)  # type: ignore[method-assign,assignment]
    _patch_multipart_completion()


class _FileValue:
    """A completed multipart upload's body, in a temporary file: a key adopts the file as its buffer."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file = file
        self.size = size

    def __len__(self) -> int:
        return self.size


def _patch_multipart_completion() -> None:
    """``FakeMultipart.complete`` as moto's (same checks, etag and checksum), concatenating into a file."""
    from moto.s3 import models as s3_models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.s3.models import FakeKey, FakeMultipart, MultipartChecksumBuilder
    from moto.utilities.utils import md5_hash

    def complete(self: Any, body: Iterable[tuple[int, str]]) -> tuple[_FileValue, str, Any]:
        builder = MultipartChecksumBuilder(
            self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
        )
        total = tempfile.TemporaryFile()  # noqa: SIM115 (the key keeps it open as its body)
        try:
            md5s = bytearray()
            last = None
            count = 0
            for number, etag in body:
                part = self.parts.get(number)
                if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                    raise InvalidPart()
                if last is not None and last.contentsize < s3_models.S3_UPLOAD_PART_MIN_SIZE:  # type: ignore[attr-defined]
                    raise EntityTooSmall()
                md5s.extend(bytes.fromhex(part.etag.replace('"', "")))
                value = part.value  # one part in memory at a time
                total.write(value)
                builder.addPart(value)
                last = part
                count += 1
            if count == 0:
                raise MalformedXML()
        except BaseException:
            total.close()
            raise
        full_etag = md5_hash()
        full_etag.update(bytes(md5s))
        return _FileValue(total, total.tell()), f"{full_etag.hexdigest()}-{count}", builder.build()

    FakeMultipart.complete = complete  # type: ignore[method-assign,assignment]

    value_property: Any = FakeKey.value

    def set_value(self: Any, new_value: Any) -> None:
        if isinstance(new_value, _FileValue):
            self._value_buffer.close()
            self._value_buffer = new_value.file
            self.contentsize = new_value.size
            return
        value_property.fset(self, new_value)

    FakeKey.value = property(value_property.fget, set_value)  # type: ignore[method-assign,assignment]


def _patch_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    def record(table: Any, hash_key: Any, range_key: Any) -> None:
        changes = _current()
        if changes is not None:
            changes.ddb_items.add((table.account_id, table.region_name, table.name, hash_key, range_key))

    original_put = Table.put_item

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        record(self, item.hash_key, item.range_key)
        return item

    Table.put_item = put_item  # type: ignore[method-assign]

    original_delete = Table.delete_item

    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        item = original_delete(self, hash_key, range_key)
        record(self, hash_key, range_key)
        return item

    Table.delete_item = delete_item  # type: ignore[method-assign]

    original_update = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = original_update(self, table_name, *args, **kwargs)  # changes the item in place
        record(self.get_table(table_name), item.hash_key, item.range_key)
        return item

    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Apply the patches above to moto's classes, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _patch_sqs()
        _patch_s3()
        _patch_dynamodb()
        _patch_dispatch()
        _installed = True


def _patch_dispatch() -> None:
    """moto lists a response class's methods (``inspect.getmembers``) on every request to find the
    action: 0.2-0.45 ms a call, for a list that never changes. It is listed once per class."""
    from moto.core import responses

    original: Callable[[object], list[str]] = responses.method_names_from_class  # type: ignore[attr-defined]
    listed: dict[object, list[str]] = {}

    def method_names_from_class(clazz: object) -> list[str]:
        names = listed.get(clazz)
        if names is None:
            names = listed[clazz] = original(clazz)
        return names

    responses.method_names_from_class = method_names_from_class  # type: ignore[attr-defined]


def index_restored_message(queue: Any, message: Any) -> None:
    """Register a message restored from disk, as ``add_message`` would have."""
    message.mlambda_queue = queue_ref(queue)
    for handle in message.all_receipt_handles:
        if handle is not None:
            _MESSAGES_BY_HANDLE[handle] = message


def forget_all_messages() -> None:
    """Drop the receipt-handle index (moto's backends were reset)."""
    _MESSAGES_BY_HANDLE.clear()
