"""Files that survive a crash and refuse damage: atomic versioned writes and SHA-256 checksums.

A saved folder (an index, a persisted retriever) is changed by writing the new version's files under new names
beside the old ones and then replacing one small file that names them (the *commit file*) with ``os.replace``,
which is atomic on POSIX and Windows (:func:`versioned_save`). Whatever moment the process dies, the commit file
names either the old, complete version or the new, complete one. A model folder, whose file names are fixed, is
written whole into a temporary folder beside it and swapped into place (:func:`replace_folder`).

A save removes only what the library wrote itself: files a manifest of its own names (checked to have the
library's own forms), and temporaries, whose names start with :data:`TEMPORARY_PREFIX`. Nothing is found by
globbing a folder, so a user's files beside a save are never touched. Checksums recorded at save time let a load
refuse a file changed or damaged afterwards, naming it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

#: The checksum file of a saved model folder, in ``sha256sum`` format (``sha256sum -c`` verifies it too).
CHECKSUMS_FILE = "checksums.sha256"
#: The start of every temporary file or folder the library makes (``<prefix><tag>-<the name it stands for>``).
TEMPORARY_PREFIX = ".gear-tmp-"
#: What :func:`version_tag` returns, as a regular expression.
TAG_PATTERN = "[0-9a-f]{12}"
_GLOB_CHARACTERS = frozenset("*?[]")


class CorruptFileError(ValueError):
    """A file a load reads is damaged, malformed or was changed after it was saved."""


class ModelMismatchError(ValueError):
    """An index (or file) was built with another model than the one it is used with."""


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


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh name beside ``path`` for a temporary that stands for it (removed by :func:`remove_temporaries`)."""
    path = Path(path)
    return path.with_name(f"{TEMPORARY_PREFIX}{version_tag()}-{path.name}")


def remove_temporaries(folder: str | os.PathLike, name: str) -> None:
    """Remove the temporaries of ``folder / name`` that died saves left: only :func:`temporary_path`'s exact form."""
    form = re.compile(re.escape(TEMPORARY_PREFIX) + TAG_PATTERN + "-" + re.escape(name))
    with os.scandir(folder) as entries:
        stale = [entry.name for entry in entries if form.fullmatch(entry.name)]
    for stale_name in stale:
        remove_path(Path(folder) / stale_name)


def remove_path(path: Path) -> None:
    """Remove a file, a symbolic link (never what it points to) or a folder with its contents."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader, or the file after a crash, holds the old or the new
    content, never a mix (a temporary file beside it, flushed, then ``os.replace``, which replaces a symbolic link
    itself, never writing through it)."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_path(path.parent)


def plain_file_name(name: object, where: str) -> str:
    """``name`` when it is a plain file name inside a folder (no separators, no ``..``, no glob characters), else
    CorruptFileError: a commit file must not send a load, or a save's clean-up, outside its own files."""
    if (
        not isinstance(name, str)
        or not name
        or name in {".", ".."}
        or Path(name).name != name
        or "\\" in name
        or _GLOB_CHARACTERS & set(name)
    ):
        raise CorruptFileError(f"{where}: {name!r} is not a file name inside the folder")
    return name


def own_file_name(name: object, form: str, where: str) -> str:
    """``name`` when it is a plain file name of the library's own ``form`` (a regular expression it matches
    whole), else CorruptFileError: a save removes nothing else, whatever a manifest says."""
    if not re.fullmatch(form, plain_file_name(name, where)):
        raise CorruptFileError(f"{where}: {name!r} is not a file this library writes")
    return name


# ----------------------------------------------------------------------------------------------------------
# Versioned folders: new files under new names, one commit file switched to them.


@contextlib.contextmanager
def versioned_save(
    folder: Path, commit_file: str, form: str, new_files: Collection[str], committed: Callable[[], Iterable[str]]
) -> Iterator[None]:
    """Around a save that writes ``new_files`` into ``folder`` and, last, switches ``commit_file`` to them.

    ``committed()`` gives the file names the commit file records (it is called only when that file exists). A
    journal records the names of both versions before the save begins; after it, whether it succeeded or failed
    (and, at the next save, after one that died), the journal's names that the commit file does not give are
    removed: the replaced version, or an unfinished one. Every name must have the library's ``form``. A commit file
    that cannot be read, or that names other files, is not cleaned up after: a warning says so, its files stay.
    """
    journal = folder / f".{commit_file}.pending"
    for name in (commit_file, journal.name):
        remove_temporaries(folder, name)
    before = _committed_names(folder / commit_file, form, committed)
    if before is not None:
        _remove_unnamed(folder, journal, before, form)
    write_atomic(journal, json.dumps(sorted({*(before or ()), *new_files})))
    try:
        yield
    finally:
        # A commit file unreadable now was not written by this save: its new files are all unfinished.
        _remove_unnamed(folder, journal, _committed_names(folder / commit_file, form, committed) or set(), form)


def _committed_names(path: Path, form: str, committed: Callable[[], Iterable[str]]) -> set[str] | None:
    if not path.exists():
        return set()
    try:
        return {own_file_name(name, form, str(path)) for name in committed()}
    except (OSError, ValueError) as error:
        warnings.warn(f"{error}; saving over it leaves the files it names in place", stacklevel=4)
        return None


def _remove_unnamed(folder: Path, journal: Path, keep: set[str], form: str) -> None:
    """Remove the files ``journal`` names that are not in ``keep``, then the journal."""
    if not journal.exists():
        return
    try:
        names = json.loads(journal.read_text(encoding="utf-8"))
        if not isinstance(names, list):
            raise CorruptFileError(f"{journal} is not a list of file names")
        names = {own_file_name(name, form, str(journal)) for name in names}
    except (OSError, ValueError) as error:
        warnings.warn(f"{error}; leaving the files it names in place", stacklevel=4)
        return
    for name in sorted(names - keep):
        remove_path(folder / name)
    journal.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------
# Whole folders (a model): written beside, swapped into place.


@contextlib.contextmanager
def replace_folder(target: str | os.PathLike, own_patterns: Iterable[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target`` to write a new version into; on leaving, it takes
    ``target``'s place in one atomic step (Linux; elsewhere two renames), so a reader, or the folder after a crash,
    has the old version or the new one, never a mix.

    The old version's files (those its :data:`CHECKSUMS_FILE` lists, or match ``own_patterns`` where it lists none)
    go; any other entry of ``target`` (a model card, notes) is carried into the new version as a hard link. A
    symbolic link in ``target`` where the new version has a file is refused (ValueError naming it), never written
    through. Temporaries of saves that died are removed first; when the body raises, ``target`` stays as it was.
    """
    target = Path(os.path.realpath(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is a file, not a folder to save into")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():  # else a swap that died between its two renames left the only copy in a temporary
        remove_temporaries(target.parent, target.name)
    staging = temporary_path(target)
    staging.mkdir()
    try:
        yield staging
        if target.is_dir():
            _carry_over(target, staging, own_patterns)
            shutil.copystat(target, staging)  # the folder's permissions
        for path in [*staging.iterdir(), staging]:
            fsync_path(path)
        in_target = Path.cwd() == target
        _swap(staging, target)
        if in_target:  # the working folder was the old version, about to be removed: move to the new one
            os.chdir(target)
        fsync_path(target.parent)
    finally:
        remove_path(staging)  # after the swap: the old version


def _carry_over(old: Path, new: Path, own_patterns: Iterable[str]) -> None:
    """Link into ``new`` the entries of ``old`` that are neither written anew nor the old version's own files."""
    written = {path.name for path in new.iterdir()}
    for name in sorted(written):
        if (old / name).is_symlink():
            raise ValueError(f"{old / name} is a symbolic link: refusing to write through it (remove it first)")
    try:
        own = set(read_checksums(old) or ())
    except CorruptFileError:
        own = set()
    if not own:  # saved by another tool, or damaged: what a save writes
        own = {path.name for pattern in own_patterns for path in old.glob(pattern)}
    for entry in old.iterdir():
        if entry.name in written or entry.name in own or entry.name == CHECKSUMS_FILE:
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), new / entry.name)
        elif entry.is_dir():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    try:
        os.link(source, destination)
    except OSError:  # a file system without hard links
        shutil.copy2(source, destination)


def _swap(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``, and the old ``target`` (if any) at ``new``'s name."""
    if not target.exists():
        os.rename(new, target)
    elif not _exchange(new, target):  # two renames: for a moment there is no ``target``
        old = temporary_path(target)
        os.rename(target, old)
        os.rename(new, target)
        os.rename(old, new)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux's ``renameat2(RENAME_EXCHANGE)``); False where that is missing."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a C library without it (glibc before 2.28)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a kernel or file system without it
        return False
    raise OSError(code, os.strerror(code), str(b))


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
                f"(or {CHECKSUMS_FILE} itself was); to keep a change made on purpose, record the folder's checksums "
                "again: gear_core.folders.write_model_checksums(folder)"
            )
    return True
