"""Files that survive a crash and refuse damage: atomic versioned writes and SHA-256 checksums.

A saved folder (an index, a persisted retriever, a model) is changed by writing the new version's files under new
names beside the old ones and then replacing one small file that names them (the *commit file*) with
``os.replace``, which is atomic on POSIX and Windows. Whatever moment the process dies, the commit file names
either the old, complete version or the new, complete one; files of an unfinished save are removed by the next.
Checksums recorded at save time let a load refuse a file changed or damaged afterwards, naming it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

#: The checksum file of a saved model folder, in ``sha256sum`` format (``sha256sum -c`` verifies it too).
CHECKSUMS_FILE = "checksums.sha256"


class CorruptFileError(ValueError):
    """A file a load reads is damaged, malformed or was changed after it was saved."""


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_tag() -> str:
    """A fresh tag for the file names of one save (unique enough that two saves never share a name)."""
    return uuid.uuid4().hex[:12]


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a folder's entries, to the disk (so a power cut cannot reorder them behind the switch)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        descriptor = os.open(path, flags)
    except OSError:  # e.g. folders cannot be opened on Windows: nothing to flush there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader, or the file after a crash, holds the old or the new
    content, never a mix (a temporary file beside it, flushed, then ``os.replace``)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{version_tag()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_path(path.parent)


def remove_stale(folder: str | os.PathLike, patterns: Iterable[str], keep: Iterable[str]) -> None:
    """Remove the files and folders of ``folder`` matching ``patterns`` (globs) that are not in ``keep``: the
    versions a save replaced, or the leftovers of a save that died. Other files are never touched."""
    import shutil

    folder, keep = Path(folder), set(keep)
    for pattern in patterns:
        for path in folder.glob(pattern):
            if path.name in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def plain_file_name(name: object, where: str) -> str:
    """``name`` when it is a plain file name inside a folder (no separators, no ``..``), else CorruptFileError:
    a commit file must not send a load outside its folder."""
    if not isinstance(name, str) or not name or name in {".", ".."} or Path(name).name != name or "\\" in name:
        raise CorruptFileError(f"{where}: {name!r} is not a file name inside the folder")
    return name


def write_checksums(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Record the SHA-256 of ``folder``'s files ``names`` in :data:`CHECKSUMS_FILE` (atomically)."""
    folder = Path(folder)
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in sorted(set(names))]
    write_atomic(folder / CHECKSUMS_FILE, "".join(lines))


def read_checksums(folder: str | os.PathLike) -> dict[str, str] | None:
    """The recorded checksums of ``folder`` ({file name: hex}), or None when it records none."""
    path = Path(folder) / CHECKSUMS_FILE
    if not path.is_file():
        return None
    checksums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise CorruptFileError(f"{path}:{number} is not a '<sha256>  <file>' line")
        checksums[plain_file_name(name, f"{path}:{number}")] = digest.lower()
    return checksums


def verify_checksums(folder: str | os.PathLike, names: Iterable[str] | None = None) -> bool:
    """Check ``folder``'s files against :data:`CHECKSUMS_FILE` (only ``names`` if given): FileNotFoundError or
    CorruptFileError naming the first file that is missing or differs. False when the folder records none."""
    folder = Path(folder)
    checksums = read_checksums(folder)
    if checksums is None:
        return False
    for name in sorted(checksums if names is None else set(names) & set(checksums)):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (listed in {folder / CHECKSUMS_FILE})")
        if sha256_file(path) != checksums[name]:
            raise CorruptFileError(
                f"{path} is damaged or was changed after saving: its SHA-256 does not match {CHECKSUMS_FILE} "
                "(to keep a change made on purpose, record the folder's checksums again: "
                "gear_core.modeling.write_model_checksums(folder))"
            )
    return True
