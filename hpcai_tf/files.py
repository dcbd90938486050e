"""File helpers every step of the pipeline uses: the atomic writer, the UTF-8 reader and paths as users see them.

Both turn every ``OSError`` and decoding error into a one-line :class:`~hpcai_tf.errors.KitError` that names
the file. The writer replaces only regular files: a symlink, a device node, a FIFO or a directory at the
target is refused before anything is written, and its temporary file is removed on every failure.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hpcai_tf.errors import KitError


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def check_writable_target(path: Path) -> None:
    """Refuse a target the writer would not replace: anything that exists and is not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as err:
        raise KitError(f"{display_path(path)}: cannot write it ({_reason(err)})") from None
    if stat.S_ISREG(mode):
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a symbolic link"
        if stat.S_ISLNK(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise KitError(f"{display_path(path)}: is {kind}; expected a regular file or a new name, not replaced")


def check_targets(paths: list[Path]) -> None:
    """Check every target of a command before the first is written: each is new or a regular file in a directory.

    A command that writes several files calls this first, so that a bad ``--out`` fails with nothing written.
    """
    for path in paths:
        path = Path(path)
        check_writable_target(path)
        ancestor = path.parent
        while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise KitError(f"{display_path(ancestor)}: is not a directory; expected a directory to write into")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise KitError(f"{display_path(ancestor)}: cannot write into it (permission denied)")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in its directory and a rename.

    The directory (and its parents) is created when missing; an existing target must be a regular file.
    Any failure leaves the target as it was and no temporary file behind.
    """
    path = Path(path)
    check_writable_target(path)
    parent = path.parent
    made = _make_parents(parent)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        check_writable_target(path)  # again: the name may have changed while the data was written
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise KitError(f"{display_path(path)}: cannot write it ({_reason(err)})") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            for directory in made:
                _remove_empty(directory)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def read_text_file(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a missing, unreadable or undecodable file is a one-line error naming it."""
    shown = display_path(Path(path))
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KitError(f"{shown}: no such {what}") from None
    except IsADirectoryError:
        raise KitError(f"{shown}: is a directory; expected a {what}") from None
    except OSError as err:
        raise KitError(f"{shown}: cannot read it ({_reason(err)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise KitError(f"{shown}:{line}: not valid UTF-8 (byte {err.start}); expected a UTF-8 text {what}") from None


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; those created, deepest first (removed again on failure)."""
    missing = []
    current = directory
    while not current.exists() and not current.is_symlink() and current != current.parent:
        missing.append(current)
        current = current.parent
    if current.exists() and not current.is_dir():
        raise KitError(f"{display_path(current)}: is not a directory; expected a directory to write into")
    made: list[Path] = []
    try:
        for each in reversed(missing):
            each.mkdir()
            made.insert(0, each)
    except OSError as err:
        for each in made:
            _remove_empty(each)
        raise KitError(f"{display_path(directory)}: cannot create the directory ({_reason(err)})") from None
    return made


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else as given."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)
