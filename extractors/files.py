"""Reading a media file's bytes whole: confinement to a root, transient vs permanent read errors.

Decoders only ever see bytes already read whole (``read_media_bytes``), so a decoder's complaint is a
verdict on the file's content ("decode"), never on the storage under it. Read failures are classified:

- "missing": no such file (or a path component is not a folder);
- "unsupported": a folder or another non-regular file (a FIFO, a device);
- "outside_root": with a ``root``, the file resolves (symlinks followed) outside it. Checked before the
  open and again on the opened file descriptor, so a symlink swapped after validation is refused too;
- "empty": a zero-byte file;
- "transient": an IO error that may go away by itself (NFS hiccup, timeout, a file being rewritten while
  read). Retried ``retries`` times with exponential back-off in the call, then reported so that the next
  run retries it (the store does not treat it as a settled failure);
- "unreadable": any other OS refusal (permission denied, a symlink loop): settled until the file changes.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from extractors.base import ItemFailure

logger = logging.getLogger(__name__)

# errno values of IO errors that may succeed when tried again (network filesystems, busy or stale handles).
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EIO", "EAGAIN", "EWOULDBLOCK", "ETIMEDOUT", "ESTALE", "EINTR", "ECONNRESET", "ECONNABORTED",
                 "ECONNREFUSED", "EBUSY", "ENOLCK", "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH",
                 "ENETRESET", "ENOTCONN", "EREMOTEIO", "ETXTBSY", "ENOBUFS", "ENOMEM")
    if hasattr(errno, name)
)
_PROC_FD = Path("/proc/self/fd")


@dataclass(frozen=True)
class ReadOptions:
    """How media files are read: the folder they must stay inside (None: no confinement) and the retries
    of transient IO errors (waits of backoff_s, 2*backoff_s, 4*backoff_s, ...)."""

    root: str | None = None
    retries: int = 3
    backoff_s: float = 0.5


DEFAULT_READS = ReadOptions()


def is_transient_error(exc: BaseException) -> bool:
    """An IO error worth retrying (timeouts, resets, EIO/ESTALE/EAGAIN...), never a bug or a missing file."""
    if isinstance(exc, (TimeoutError, ConnectionError, BlockingIOError, InterruptedError)):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` (already resolved) lies in the resolved ``root``."""
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.fspath(path), real_root]) == real_root


def read_media_bytes(path: str | os.PathLike, reads: ReadOptions = DEFAULT_READS) -> bytes:
    """The whole file, or ItemFailure with one of the kinds above (transient errors retried first)."""
    file_path = Path(path)
    if reads.root is not None:
        _check_inside(file_path, os.path.realpath(file_path), reads.root)
    attempt = 0
    while True:
        try:
            data = _read_once(file_path, reads.root)
        except OSError as exc:
            if not is_transient_error(exc):
                raise _permanent_failure(file_path, exc) from exc
            if attempt >= reads.retries:
                raise ItemFailure("transient", f"{file_path}: read failed {attempt + 1} time(s), last with "
                                               f"{_describe(exc)}; it is retried on the next run") from exc
            wait_s = reads.backoff_s * 2**attempt
            logger.info("%s: %s; retrying in %.2fs", file_path, _describe(exc), wait_s)
            time.sleep(wait_s)
            attempt += 1
            continue
        if not data:
            raise ItemFailure("empty", f"{file_path}: zero-byte file")
        return data


def _read_once(file_path: Path, root: str | None) -> bytes:
    """One open-and-read; OSError(EAGAIN) when the file changed while it was read."""
    mode = os.stat(file_path).st_mode
    if stat.S_ISDIR(mode):
        raise ItemFailure("unsupported", f"{file_path}: is a directory, not a media file")
    if not stat.S_ISREG(mode):
        raise ItemFailure("unsupported", f"{file_path}: is not a regular file (a FIFO, socket or device)")
    with open(file_path, "rb") as handle:
        if root is not None:
            _check_inside(file_path, _opened_path(handle.fileno(), file_path), root)
        before = os.fstat(handle.fileno())
        data = handle.read()
        after = os.fstat(handle.fileno())
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        raise OSError(errno.EAGAIN, "the file changed while it was being read (being rewritten?)")
    return data


def _opened_path(fd: int, file_path: Path) -> str:
    """The real path of an open file descriptor (Linux /proc), else the path resolved again."""
    try:
        return os.readlink(_PROC_FD / str(fd))
    except OSError:
        return os.path.realpath(file_path)


def _check_inside(file_path: Path, real: str, root: str) -> None:
    if not inside(real, root):
        raise ItemFailure("outside_root", f"{file_path}: resolves to {real}, outside the media root "
                                          f"{os.path.realpath(root)}; nothing was read. Fix: replace the symlink "
                                          f"with the file, or point it inside the media root")


def _permanent_failure(file_path: Path, exc: OSError) -> ItemFailure:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return ItemFailure("missing", f"{file_path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return ItemFailure("unsupported", f"{file_path}: is a directory, not a media file")
    return ItemFailure("unreadable", f"{file_path}: cannot be read ({_describe(exc)}); "
                                     f"fix the file's permissions or the path")


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    return f"{name or type(exc).__name__}: {exc.strerror or exc}"


def read_options(spec, root: str | os.PathLike | None) -> ReadOptions:
    """The read options of a media extractor's spec (``read_retries``, ``read_backoff_s``) for one call."""
    return ReadOptions(root=None if root is None else os.fspath(root),
                       retries=getattr(spec, "read_retries", DEFAULT_READS.retries),
                       backoff_s=getattr(spec, "read_backoff_s", DEFAULT_READS.backoff_s))
