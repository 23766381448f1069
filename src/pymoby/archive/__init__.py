"""pymoby.archive: layer tars in and out -- the security boundary for layers and `docker cp`.

Rule: this package imports nothing above it (no daemon, server or store) and does blocking file
work only; callers run it in threads. Nothing an archive says may touch anything outside the
extraction root (see `extract` and `rootdir`); errors are `errdefs` classes (see `errors`).

Modules: `compression` (magic-byte detection, streaming readers, writers), `tarformat` (headers),
`tarreader` (a byte-accounting reader), `rootdir` (in-root path resolution), `extract`
(`apply_layer`), `tarsplit` (`reassemble`), `write` (`tar_directory`), `diff` (`changes`,
`diff_layer`), `whiteouts` (names).
"""

from pymoby.archive.compression import (
    Compression,
    compressing_writer,
    decompress_stream,
    detect,
)
from pymoby.archive.diff import Change, ChangeKind, changes, diff_layer, directory_size
from pymoby.archive.errors import (
    ArchiveError,
    ArchiveSystemError,
    BreakoutError,
    CompressionError,
    TarFormatError,
)
from pymoby.archive.extract import LayerStats, apply_layer
from pymoby.archive.tarsplit import TarSplitCorrupt, reassemble
from pymoby.archive.write import tar_directory

__all__ = [
    "ArchiveError",
    "ArchiveSystemError",
    "BreakoutError",
    "Change",
    "ChangeKind",
    "Compression",
    "CompressionError",
    "LayerStats",
    "TarFormatError",
    "TarSplitCorrupt",
    "apply_layer",
    "changes",
    "compressing_writer",
    "decompress_stream",
    "detect",
    "diff_layer",
    "directory_size",
    "reassemble",
    "tar_directory",
]
