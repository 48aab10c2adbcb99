"""What reading a file may cost, and the one error every reader raises past it.

Every reader (``load_torch``, ``load_safetensors``, ``rnnlab.load`` for .safetensors and
.npz, ``import_onnx``, run directories) checks sizes against these limits *before* it
allocates, so a small hostile file is a quick ``LimitError`` (a ValueError) naming the
file and the limit, never a MemoryError, a RecursionError or a long hang:

- the arrays a file makes may take at most ``budget(file)`` bytes: twice the bytes the file
  really holds (its size, or its members' declared sizes for a zip archive) plus
  ``SLACK_BYTES``, and never more than ``MAX_BYTES``;
- a compressed member may not claim more than ``MAX_EXPANSION`` times its stored size;
- a pickle may build at most ``MAX_ITEMS`` containers (shared ones, through the pickle's
  memo, count once per reference) nested at most ``MAX_DEPTH`` deep, and a JSON header
  nests at most ``MAX_DEPTH`` deep;
- a configuration read from a file (hidden sizes, layer counts) must describe the tensors
  the file holds: the shapes are checked against the tensors before any layer is built.

Trusted files larger than this: raise the limits, e.g. ``rnnlab.io.limits.MAX_BYTES =
64 << 30`` (or ``RNNLAB_MAX_BYTES`` in the environment).
"""
import os

MAX_BYTES = int(os.environ.get("RNNLAB_MAX_BYTES", 16 << 30))    # 16 GiB
SLACK_BYTES = 64 << 20                                             # 64 MiB
MAX_EXPANSION = 1000
MAX_ITEMS = 1_000_000
MAX_DEPTH = 200


class LimitError(ValueError):
    """A file asks for more than the reading limits allow (see rnnlab.io.limits)."""


def budget(path, held=None):
    """The bytes a reader may allocate for ``path``'s arrays; ``held``: what the file
    really holds (default: its size on disk)."""
    if held is None:
        try:
            held = os.path.getsize(path)
        except (OSError, TypeError):
            held = 0
    return min(MAX_BYTES, 2 * int(held) + SLACK_BYTES)


class Budget:
    """Bytes taken so far against ``budget(path, held)``; ``take`` raises LimitError past
    it, naming the file and what asked."""

    def __init__(self, path, held=None):
        self.path, self.left = path, budget(path, held)
        self.limit = self.left

    def take(self, nbytes, what):
        nbytes = int(nbytes)
        if nbytes > self.left:
            raise LimitError(f"{self.path}: {what} needs {nbytes:,} bytes; the file may make "
                             f"{self.limit:,} bytes of arrays at most (twice what it holds "
                             f"plus {SLACK_BYTES >> 20} MiB, at most rnnlab.io.limits."
                             f"MAX_BYTES = {MAX_BYTES:,}); raise that limit for a trusted "
                             "file")
        self.left -= nbytes


def check_member(path, info, needed=None):
    """A zip member (``zipfile.ZipInfo``) whose declared size fits: at least ``needed``
    bytes, and at most MAX_EXPANSION times its stored size when compressed."""
    if needed is not None and info.file_size < needed:
        raise ValueError(f"{path}: {info.filename} holds {info.file_size} bytes, needs "
                         f"{needed}: the file is truncated or damaged")
    if info.compress_type != 0 and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
        raise LimitError(f"{path}: {info.filename} claims {info.file_size:,} bytes from "
                         f"{info.compress_size:,} stored (over rnnlab.io.limits."
                         f"MAX_EXPANSION = {MAX_EXPANSION}x)")


def elements(shape, path, what):
    """The element count of ``shape`` (a tuple of ints), checked to be a plausible size
    (non-negative, below 2**62) before anything multiplies it out."""
    n = 1
    for s in shape:
        if not isinstance(s, int) or s < 0:
            raise ValueError(f"{path}: {what} has a bad shape {shape!r}")
        n *= s
        if n > 1 << 62:
            raise LimitError(f"{path}: {what} has shape {shape}: too many elements")
    return n
