"""Writing and reading files so that a failure never costs a good one.

* :func:`write_replacing` -- a file that may replace an earlier one (a saved model, its
  ``.json``, an evaluation's JSON, a manifest): written whole under a temporary name beside
  it, then renamed. A failure (disk full, a limit, an interruption) leaves the earlier file
  as it was, removes the temporary one and names the file in its message.
* :func:`write_new` -- a file that must never replace anything (a colorized photo or video):
  written the same way, then published with a hard link, which fails when the name was
  taken meanwhile, by another process too. Where a file system has no links (Google Drive's
  mount), the name is reserved with an exclusive create before the rename.
* :func:`read_small` -- an existing file read only when it is a regular file of at most
  ``limit`` bytes: ``/dev/zero``, a FIFO or a huge file is refused instead of read to the end.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

Writer = Callable[[Path], None]  # writes the whole content to the path it is given


def _temporary_beside(path: Path, suffix: str) -> Path:
    """A new, hidden, unique file in ``path``'s folder (created empty)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=f".partial{suffix}",
                                    dir=path.parent)
    os.close(handle)
    return Path(name)


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
    partial = _temporary_beside(path, path.suffix)
    try:
        _write(partial, content)
        os.replace(partial, path)
    except OSError as error:
        raise _failed(path, error, f"the earlier {path.name} is unchanged" if existed
                      else "nothing was written under that name") from error
    finally:
        partial.unlink(missing_ok=True)
    return path


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


def exists_message(target: Path) -> str:
    return (f"{target} exists and is never overwritten: name another target, or move that "
            "file away first.")


def write_new(target, content: bytes | str | Writer) -> Path:
    """Write ``target``, which must not exist (then or by the time it is finished)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _temporary_beside(target, target.suffix)
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
