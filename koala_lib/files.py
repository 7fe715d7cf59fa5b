"""Writing and reading files so that a failure never costs a good one.

* :func:`write_replacing` -- a file that may replace an earlier one (a saved model, its
  ``.json``, an evaluation's JSON, a manifest): written whole under a temporary name beside
  it, then renamed. A failure (disk full, a limit, an interruption) leaves the earlier file
  as it was, removes the temporary one and names the file in its message.
  :func:`write_replacing_all` does the same for files that belong together.
* :func:`write_new` -- a file that must never replace anything (a colorized photo or video):
  written the same way, then published with a hard link, which fails when the name was
  taken meanwhile, by another process too. Where a file system has no links (Google Drive's
  mount), the name is reserved with an exclusive create before the rename.
* :func:`read_small` -- an existing file read only when it is a regular file of at most
  ``limit`` bytes: ``/dev/zero``, a FIFO or a huge file is refused instead of read to the end.
* :func:`free_name` -- the next output name not taken (``photo_colorized-1.png``).
* :func:`file_sha256` -- a file's checksum, read in blocks.
* :func:`folder_lock` -- one process at a time in a folder (a training run's).
* :func:`json_ready` -- NumPy values and paths as JSON holds them.
* :func:`plural` -- a count and its noun, for the messages that name how many files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Writer = Callable[[Path], None]  # writes the whole content to the path it is given


def _temporary_beside(path: Path, suffix: str) -> Path:
    """A new, hidden, unique file in ``path``'s folder (created empty), ending in ``suffix``
    (all of the name's: Keras wants ``.weights.h5``, NumPy ``.npy``). Created with the
    usual permissions (the umask's), not ``mkstemp``'s owner-only ones: it becomes the file."""
    for _ in range(100):
        partial = path.parent / f".{path.stem}-{secrets.token_hex(6)}.partial{suffix}"
        try:
            os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return partial
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of this module's temporary files (a write cut short may
    leave one behind; it is never a user's file)."""
    return name.startswith(".") and ".partial" in name


def _write(partial: Path, content: bytes | str | Writer) -> None:
    if callable(content):
        content(partial)
    else:
        data = content.encode("utf-8") if isinstance(content, str) else content
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def _failed(path: Path, error: OSError, kept: str) -> OSError:
    reason = error.strerror or str(error)
    return OSError(error.errno, f"could not write {path} ({reason}): {kept}")


def write_replacing(path, content: bytes | str | Writer) -> Path:
    """``path`` holds ``content`` whole, or keeps what it held.

    ``content`` is bytes, text (UTF-8), or a function that writes the whole file to the
    path it is given (``model.save``, ``Image.save``); it gets a temporary path with
    ``path``'s suffix, in the same folder, so that the rename is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    partial = _temporary_beside(path, "".join(path.suffixes))
    try:
        _write(partial, content)
        os.replace(partial, path)
    except OSError as error:
        raise _failed(path, error, f"the earlier {path.name} is unchanged" if existed
                      else "nothing was written under that name") from error
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_replacing_all(contents: dict) -> None:
    """Several files that belong together (a model and its ``.json``): each is written whole
    under a temporary name first, and only then are they renamed, so a failure while
    writing leaves every earlier file as it was."""
    written: dict[Path, Path] = {}
    try:
        for path, content in contents.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            written[path] = partial = _temporary_beside(path, "".join(path.suffixes))
            try:
                _write(partial, content)
            except OSError as error:
                kept = (f"the earlier {', '.join(Path(p).name for p in contents)} are "
                        "unchanged" if Path(path).exists() else "nothing was written")
                raise _failed(path, error, kept) from error
        for path, partial in written.items():
            os.replace(partial, path)
    finally:
        for partial in written.values():
            partial.unlink(missing_ok=True)


def publish_new(partial: Path, target: Path) -> None:
    """Give the finished file ``partial`` the name ``target``, never replacing a file.

    FileExistsError when ``target`` exists, even when it appeared a moment ago.
    """
    try:
        os.link(partial, target)  # fails if target exists: no window to overwrite it
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, exists_message(target)) from None
    except OSError:  # a file system without hard links: reserve the name, then rename
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, exists_message(target)) from None
        os.replace(partial, target)
    else:
        partial.unlink(missing_ok=True)


def free_name(folder, stem: str, extension: str, tail: str = "_colorized") -> Path:
    """``folder/<stem><tail><extension>``, or ``<stem><tail>-1<extension>``, ``-2``... while
    the name is taken. Only a name: :func:`write_new` still refuses one taken meanwhile."""
    folder = Path(folder)
    target, number = folder / f"{stem}{tail}{extension}", 1
    while target.exists() or target.is_symlink():
        target, number = folder / f"{stem}{tail}-{number}{extension}", number + 1
    return target


def exists_message(target: Path) -> str:
    return (f"{target} exists and is never overwritten: name another target, or move that "
            "file away first.")


def write_new(target, content: bytes | str | Writer) -> Path:
    """Write ``target``, which must not exist (then or by the time it is finished)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _temporary_beside(target, "".join(target.suffixes))
    try:
        _write(partial, content)
        publish_new(partial, target)
    except FileExistsError:
        raise
    except OSError as error:
        raise _failed(target, error, "nothing was written under that name") from error
    finally:
        partial.unlink(missing_ok=True)
    return target


def read_small(path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``; ValueError (naming it) when it is something
    else (a device, a FIFO, a folder) or longer than ``limit`` bytes. Nothing more than
    ``limit + 1`` bytes is ever read."""
    path = Path(path)
    # Opened without blocking and checked on the open file: a FIFO cannot stall the open,
    # and nothing can be swapped in between the check and the read.
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise ValueError(f"{path} is not a regular file (a device, a pipe or a folder): "
                         f"name a {what} instead.")
    with os.fdopen(handle, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit:,} bytes: not a {what}.")
    return data


def file_sha256(path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


LOCK_FILE = ".koala-lock"
LOCK_HEARTBEAT_S = 30  # the holder touches its lock this often...
LOCK_STALE_S = 300  # ...so a lock untouched this long was left by a process that is gone


class FolderBusyError(RuntimeError):
    """Another process is working in the folder."""


@contextlib.contextmanager
def folder_lock(folder, work: str = "work"):
    """Hold ``folder`` for ``work`` while the block runs: a second process is refused with
    FolderBusyError naming the holder (its machine, process and start time).

    The lock is a file created exclusively in the folder (Google Drive's mount has no
    ``flock``), touched every :data:`LOCK_HEARTBEAT_S` seconds by a thread. A lock whose
    process has died on this machine, or that nobody touched for :data:`LOCK_STALE_S`
    seconds (a Colab runtime that was cut off), is taken over.
    """
    path = Path(folder) / LOCK_FILE
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "work": work,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None and not _is_stale(path, holder):
                raise FolderBusyError(
                    f"{folder} is in use: {holder.get('work', 'work')} started "
                    f"{holder.get('started', '?')} by process {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')} holds it ({path}). Wait for it to finish, or "
                    f"choose another folder. If that process is gone, delete {path}.") from None
            path.unlink(missing_ok=True)  # stale (or vanished meanwhile): try again
            continue
        with os.fdopen(handle, "w") as stream:
            json.dump(mine, stream)
        break
    else:
        raise FolderBusyError(f"{folder}: could not take its lock {path}; try again.")
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(LOCK_HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    beat = threading.Thread(target=heartbeat, name=f"lock {path}", daemon=True)
    beat.start()
    try:
        yield path
    finally:
        stop.set()
        beat.join()
        if _lock_holder(path) == mine:  # never remove a lock another process took over
            path.unlink(missing_ok=True)


def _lock_holder(path: Path) -> dict | None:
    """The lock's content; {} when it cannot be read (being written); None when gone."""
    try:
        holder = json.loads(read_small(path, 4096, "lock file").decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(path: Path, holder: dict) -> bool:
    try:
        untouched = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if untouched > LOCK_STALE_S:
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)  # signal 0: does the process exist?
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, as another user's
            return False
    return False


def json_ready(value):
    """``value`` as JSON can hold it: NumPy scalars and arrays as Python numbers and lists,
    NaN and infinities as None (JSON has neither), tuples as lists, anything else (a path)
    as its text."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def plural(count: int, noun: str) -> str:
    """``plural(1, "image")`` -> "1 image", ``plural(3, "image")`` -> "3 images"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
