"""The errors the badgerlike engine raises; all derive from :class:`StorageError`."""

from __future__ import annotations


class StorageError(Exception):
    """Something went wrong in the storage engine (I/O failure, bad state)."""


class StorageLockedError(StorageError):
    """The data directory is held by another process (or another open driver)."""


class StorageCorruptionError(StorageError):
    """A record failed its CRC or framing check where recovery may not guess.

    ``path`` and ``offset`` name the file and the byte position of the bad record,
    so that an operator can look at it (or restart with the ``repair`` option).
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f"corrupt record in {path} at byte {offset}: {reason}; valid records follow it, "
            "so this is not a torn tail. Restore from a backup, or set the storage option "
            "repair = true to skip the damaged bytes (their records are lost)"
        )
        self.path = path
        self.offset = offset
        self.reason = reason
