"""Named locks across every process of the deployment, for broker work that
must happen once at a time (a token issue, an account sync).

Production (``settings.REDIS_URL``): a Redis lock that expires after ``ttl``
seconds, so a crashed holder frees it. Embedded default: ``flock`` on a file
under ``VAR_DIR/locks/``; the kernel frees it when the holder dies. Each
acquisition opens its own file description, so the lock also excludes other
threads of the same process (Linux ties flock to the open file description).

Callers never hold a database transaction across a lock: a write transaction
held while waiting would block every other writer (SQLite has one), and a
waiter inside a transaction would not see what the holder committed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from brokers.base import BrokerUnavailable

if TYPE_CHECKING:
    from redis.lock import Lock as RedisLock

logger = logging.getLogger(__name__)

REDIS_PREFIX = "lock:"
POLL_FIRST = 0.002  # seconds between file-lock tries, doubling up to POLL_MAX
POLL_MAX = 0.05


class LockNotAcquired(BrokerUnavailable):
    """Another caller held the lock for longer than this caller would wait."""


def lock_path(name: str) -> Path:
    """The lock file of ``name`` (hashed: names hold credential digests and colons)."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return Path(settings.VAR_DIR) / "locks" / f"{digest}.lock"


@contextlib.contextmanager
def named_lock(name: str, *, ttl: float = 30.0, wait: float = 10.0) -> Iterator[None]:
    """Hold the lock ``name`` for the ``with`` block; wait up to ``wait`` seconds
    for it, else raise ``LockNotAcquired``. ``ttl`` bounds how long a Redis lock
    outlives a holder that died (the block should finish well within it)."""
    if settings.REDIS_URL:
        with _redis_lock(name, ttl=ttl, wait=wait):
            yield
    else:
        with _file_lock(name, wait=wait):
            yield


@contextlib.contextmanager
def _redis_lock(name: str, *, ttl: float, wait: float) -> Iterator[None]:
    import redis
    from redis.exceptions import LockError

    from core.redis_client import redis_client

    lock = redis_client().lock(REDIS_PREFIX + name, timeout=ttl, sleep=0.01, blocking=True, blocking_timeout=max(wait, 0.0))
    try:
        acquired = lock.acquire()
    except redis.RedisError as exc:
        raise LockNotAcquired("The lock service (Redis) is unavailable.") from exc
    if not acquired:
        raise LockNotAcquired(f"Another caller is doing this; waited {wait:g} s.")
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:
            # Held past ttl: another caller may have run alongside. Say so; the
            # guarded work re-reads its state, so this is loud, not corrupting.
            logger.warning("lock %r expired before its holder released it (ttl %.0f s)", name, ttl)
        except redis.RedisError:
            logger.warning("could not release lock %r (Redis unavailable); it expires in %.0f s", name, ttl)


@contextlib.contextmanager
def _file_lock(name: str, *, wait: float) -> Iterator[None]:
    path = lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        pause = POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise LockNotAcquired("The lock file could not be locked.") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockNotAcquired(f"Another caller is doing this; waited {wait:g} s.")
            time.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        # The file stays: unlinking it would let a waiter lock the old inode
        # while a newcomer locks a new one.
        os.close(fd)


# --- leases: a lock held for as long as its holder keeps renewing it --------------------------


class Lease:
    """A lock held beyond one block (a broker WebSocket per credential, open
    in one process of the deployment): ``renew`` it within ``ttl``,
    ``release`` it when done. A holder that dies frees it: the Redis key
    expires after ``ttl``, the kernel drops the file lock."""

    def __init__(self, name: str, ttl: float, *, redis_lock: RedisLock | None = None, fd: int | None = None) -> None:
        self.name = name
        self.ttl = ttl
        self._redis_lock = redis_lock
        self._fd = fd
        self.held = True

    def renew(self) -> bool:
        """Extend the lease by ``ttl``; False when it is lost (expired and
        taken by another holder, or Redis unreachable): stop using it."""
        if not self.held:
            return False
        if self._redis_lock is not None:
            import redis

            try:
                self._redis_lock.reacquire()
            except (redis.RedisError, ValueError) as exc:  # LockNotOwnedError is a RedisError
                logger.warning("lease %r lost: %s", self.name, type(exc).__name__)
                self.held = False
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._redis_lock is not None:
            import redis

            try:
                self._redis_lock.release()
            except redis.RedisError:
                logger.warning("could not release lease %r; it expires in %.0f s", self.name, self.ttl)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lease_acquire(name: str, *, ttl: float = 30.0) -> Lease | None:
    """The lease ``name`` if nobody holds it (in any process or thread), else
    None at once (never waits)."""
    if settings.REDIS_URL:
        import redis

        from core.redis_client import redis_client

        # Not thread-local: the feed renews and releases its lease from other
        # threads than the one that took it (redis-py keeps the token per thread by default).
        lock = redis_client().lock(REDIS_PREFIX + "lease:" + name, timeout=ttl, sleep=0.01, thread_local=False)
        try:
            acquired = lock.acquire(blocking=False)
        except redis.RedisError as exc:
            logger.warning("lease %r not acquired: %s", name, type(exc).__name__)
            return None
        return Lease(name, ttl, redis_lock=lock) if acquired else None
    path = lock_path("lease:" + name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return Lease(name, ttl, fd=fd)
