"""Every file rnnlab writes goes through here: written beside its target under a temporary
name, flushed to disk, then renamed over the target (``os.replace``, atomic on one file
system). A reader sees the old file or the new one, never half of one; a failed write
(a full disk, ``ulimit -f``, a kill) leaves the old file as it was and no temporary behind.
"""
import contextlib
import os
import tempfile

_UMASK = os.umask(0)                              # read once (os.umask can only swap it)
os.umask(_UMASK)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:                               # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path, suffix=""):
    """``with replacing(path) as tmp:`` write the new file at ``tmp`` (a path in the same
    directory; ``suffix`` keeps an extension a writer insists on); on success it replaces
    ``path`` atomically, on any error it is removed and ``path`` is untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix,
                               dir=directory)
    os.close(fd)
    with contextlib.suppress(OSError):            # a new file's usual mode, not mkstemp's 0600
        os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        with open(tmp, "rb+") as f:               # the bytes on disk before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))
