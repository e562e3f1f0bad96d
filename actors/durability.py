"""What makes an instance durable: its lock and its store, opened together.

``Berth.start`` opens this before any actor starts, so a second server for the
same instance, or a store that cannot be used, stops the start with one clear
line and nothing touched; ``close`` commits the store and frees the instance.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.clock import Clock
from actors.config import BerthConfig
from actors.instance_lock import InstanceLock
from actors.sqlite_store import SqliteStore
from actors.state_codec import SessionStateCodec
from actors.store import NullStore, SessionStore


@dataclass
class Durability:
    lock: InstanceLock
    store: SessionStore

    @classmethod
    def open(cls, config: BerthConfig, clock: Clock, store: SessionStore | None = None) -> Durability:
        """Lock the instance, then open its store (``store`` given: use that one)."""
        lock = InstanceLock.acquire(config.state_dir, config.instance_id)
        if store is not None:
            return cls(lock, store)
        try:
            store = (
                SqliteStore(
                    config.store_path,
                    flush_interval=config.store_flush_interval,
                    fsync=config.store_fsync,
                    retention=config.ended_retention,
                    event_limit=config.event_log_limit,
                    codec=SessionStateCodec(clock.now, clock.wall),
                    queue_bytes=config.store_queue_bytes,
                )
                if config.session_store == "sqlite"
                else NullStore()
            )
        except BaseException:
            lock.release()
            raise
        return cls(lock, store)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.lock.release()
