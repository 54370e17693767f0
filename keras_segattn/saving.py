"""Atomic writes: a file or a folder appears complete or not at all.

A process killed while `model.save` or `tf.saved_model.save` runs leaves
whatever bytes it had written. Written in place, that half-file replaces
the good checkpoint it was overwriting, and a half-written SavedModel
version folder is one that TF Serving may try to load. Here everything is
written to a hidden temporary sibling in the same folder (same filesystem)
and renamed over the target once complete; POSIX `rename` is atomic, so a
reader sees the old content or the new one, never a mixture.

- `atomic_file(path)` and `save_model_atomic(model, filepath)` for files
  (`.keras`, `.weights.h5`);
- `clean_leftovers(path)` removes what dead writers left beside `path`;
- `atomic_directory(path)` for folders (the SavedModel version folders of
  `keras_segattn.export` use it through `export.write_version`);
- `AtomicModelCheckpoint`, a `keras.callbacks.ModelCheckpoint` whose saves
  are atomic.

Temporary names start with `.` and carry the writer's process id
(`.<name>.partial-<pid>-<random>`). Leftovers of a writer that died (its
process id no longer running) are removed by the next write to the same
target, so they never accumulate; being hidden and not all digits, they are
never taken for a TF Serving version meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras

PathLike = str | os.PathLike

_PARTIAL = ".partial-"
_OLD = ".old-"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _fsync_path(path: Path) -> None:
    """Flushes a file or (the entries of) a folder to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) * path.is_dir()
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - platforms without folder fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - e.g. folders on some filesystems
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync_path(Path(root) / name)
            _fsync_path(Path(root))
    else:
        _fsync_path(path)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, under another user
        return True
    return True


def _writer_pid(name: str, prefix: str) -> int | None:
    """The process id in `<prefix><pid>-<random>[suffix]`, else None."""
    pid = name[len(prefix) :].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_leftovers(target: PathLike) -> None:
    """Removes the temporary siblings of `target` left by dead writers.

    Those are `.<name>.partial-<pid>-...` (and `.<name>.old-<pid>-...`)
    entries beside `target` whose process is no longer running; the writes
    of this module call it first. A `.old-` sibling (the previous content,
    moved aside during a replace that was cut short) is put back when
    `target` is missing.
    """
    target = Path(target)
    parent, name = target.parent, target.name
    if not parent.is_dir():
        return
    for kind in (_OLD, _PARTIAL):
        prefix = f".{name}{kind}"
        for entry in sorted(parent.iterdir()):
            if not entry.name.startswith(prefix):
                continue
            pid = _writer_pid(entry.name, prefix)
            if pid is None or _pid_running(pid):
                continue
            if kind == _OLD and not os.path.lexists(target):
                with contextlib.suppress(OSError):
                    os.rename(entry / "content", target)
            _remove(entry)


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swaps two paths (Linux `renameat2(RENAME_EXCHANGE)`).

    Returns False where the platform or filesystem cannot.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(
        _AT_FDCWD,
        os.fsencode(first),
        _AT_FDCWD,
        os.fsencode(second),
        _RENAME_EXCHANGE,
    )
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(error, os.strerror(error), str(second))


def _replace_directory(source: Path, target: Path) -> None:
    """Puts the complete folder `source` at `target`, atomically.

    A missing `target` is a plain rename. An existing one is swapped with
    `source` in one step where Linux allows it; elsewhere it is renamed
    aside first (`.<name>.old-<pid>-...`): for a moment `target` is then
    absent, never half-written, and a writer killed in that moment leaves
    the old folder to be put back by the next write.
    """
    if not os.path.lexists(target):
        os.rename(source, target)
        return
    if _exchange(source, target):
        _remove(source)  # now holds the previous content
        return
    aside = Path(
        tempfile.mkdtemp(
            prefix=f".{target.name}{_OLD}{os.getpid()}-", dir=target.parent
        )
    )
    os.rename(target, aside / "content")
    os.rename(source, target)
    _remove(aside)


def _umask() -> int:
    """The process umask, read without changing it where Linux says it
    (`os.umask` can only read it by setting it, which races with threads
    creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_default_mode(path: Path, directory: bool) -> None:
    """`mkdtemp`/`mkstemp` create owner-only entries (0700/0600); what
    replaces the target gets the mode a plain `mkdir`/`open` would give
    (0777/0666 less the umask), so that a TF Serving process running as
    another user can read a new version."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _partial_name(target: Path) -> str:
    return f".{target.name}{_PARTIAL}{os.getpid()}-"


def _suffix(name: str) -> str:
    """`.weights.h5` for `best.weights.h5`, `.keras` for `model.keras`."""
    return ".weights.h5" if name.endswith(".weights.h5") else Path(name).suffix


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[str]:
    """Context manager: fill a temporary folder, get it renamed to `path`.

    Yields the path of an empty hidden folder beside `path` (same parent,
    hence the same filesystem). When the block completes, its files are
    flushed to disk and the folder takes the place of `path` atomically;
    an existing `path` is replaced as a whole (see the module docstring),
    never merged or left half-replaced. When the block raises, the
    temporary folder is deleted and `path` is untouched.

    Args:
        path: the folder to write. Its parent is created if needed.

    Example:

    ```python
    with keras_segattn.saving.atomic_directory("export/3") as tmp:
        tf.saved_model.save(module, tmp)
    ```
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    temporary = Path(
        tempfile.mkdtemp(prefix=_partial_name(target), dir=target.parent)
    )
    _give_default_mode(temporary, directory=True)
    try:
        yield str(temporary)
        _fsync_tree(temporary)
        _replace_directory(temporary, target)
        _fsync_path(target.parent)
    except BaseException:
        _remove(temporary)
        raise


@contextlib.contextmanager
def atomic_file(path: PathLike) -> Iterator[str]:
    """Context manager: write a temporary file, get it renamed to `path`.

    Yields a path in the same folder as `path` with the same extension
    (`.keras`, `.weights.h5`, ...), so that writers that check extensions
    accept it. When the block completes, the file is flushed and
    `os.replace`d over `path`; when it raises, or the process dies, `path`
    keeps its previous content.

    Args:
        path: the file to write. Its folder is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    descriptor, name = tempfile.mkstemp(
        prefix=_partial_name(target),
        suffix=_suffix(target.name),
        dir=target.parent,
    )
    os.close(descriptor)
    temporary = Path(name)
    _give_default_mode(temporary, directory=False)
    try:
        yield str(temporary)
        if not temporary.is_file():
            raise FileNotFoundError(
                f"Nothing was written to the temporary file {temporary} "
                f"that would replace {target}."
            )
        _fsync_path(temporary)
        os.replace(temporary, target)
        _fsync_path(target.parent)
    except BaseException:
        _remove(temporary)
        raise


def save_model_atomic(
    model: keras.Model,
    filepath: PathLike,
    *,
    weights_only: bool = False,
) -> str:
    """`model.save(filepath)` (or `save_weights`) that never leaves a
    broken file at `filepath`.

    The model is saved to a temporary file in the same folder, which then
    replaces `filepath` in one `os.replace`. A process killed midway leaves
    the previous file intact (and a hidden `.<name>.partial-...` file that
    the next save to `filepath` removes).

    Args:
        model: a Keras model.
        filepath: path ending in `.keras` (or `.weights.h5` with
            `weights_only`).
        weights_only: bool. Save only the weights (`model.save_weights`).

    Returns:
        `filepath` as a string.

    Raises:
        ValueError: for a `filepath` without the extension Keras needs.
    """
    filepath = os.fspath(filepath)
    extension = ".weights.h5" if weights_only else ".keras"
    if not str(filepath).endswith(extension):
        raise ValueError(
            "Invalid value for argument `filepath`. Expected a path ending "
            f"in {extension!r}"
            + (" (with weights_only=True)" if weights_only else "")
            + f". Received: filepath={filepath!r}"
        )
    with atomic_file(filepath) as temporary:
        if weights_only:
            model.save_weights(temporary, overwrite=True)
        else:
            model.save(temporary, overwrite=True)
    return str(filepath)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` whose saves are atomic.

    Takes the arguments of `ModelCheckpoint` (monitor, `save_best_only`,
    `save_weights_only`, ...) for a fixed `filepath` (no `{epoch}`
    placeholders). Keras writes each checkpoint to a hidden temporary file
    beside `filepath`; this callback then moves it over `filepath` with one
    `os.replace`, so a run killed while saving keeps the previous, complete
    checkpoint.

    Raises:
        ValueError: for a `filepath` with formatting placeholders.
    """

    def __init__(self, filepath: PathLike, **kwargs):
        filepath = os.fspath(filepath)
        if "{" in filepath:
            raise ValueError(
                "Invalid value for argument `filepath`. Expected a fixed "
                "path (AtomicModelCheckpoint replaces one file). Received: "
                f"filepath={filepath!r}"
            )
        target = Path(filepath)
        self.target_filepath = filepath
        temporary = target.parent / (
            f".{target.name}{_PARTIAL}{os.getpid()}-checkpoint"
            + _suffix(target.name)
        )
        super().__init__(str(temporary), **kwargs)

    def _publish(self) -> None:
        temporary = Path(self.filepath)
        if temporary.is_file():  # written by this epoch or batch
            _fsync_path(temporary)
            os.replace(temporary, self.target_filepath)
            _fsync_path(temporary.parent)

    def on_train_begin(self, logs=None):
        clean_leftovers(Path(self.target_filepath))
        super().on_train_begin(logs)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._publish()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._publish()
