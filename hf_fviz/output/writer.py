"""The one way hf_fviz puts files on disk: safe names, atomic single files, and whole output
folders staged next to their place and moved in with manifest.json last.

Every writer of the package (render.save, the image-set and exemplar outputs, the atlas, the
card's local publishing) goes through here, so that "a crash never leaves a half-written file"
and "a name from a model or a label never escapes its folder" are each decided once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from ..errors import InvalidSettings

MANIFEST = "manifest.json"
SAFE_NAME_MAX = 80

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
JPEG_QUALITY = 90  # natural exemplars: photos, small files


def png_bytes(img: Image.Image, *, optimize: bool = False) -> bytes:
    """The PNG file of `img` (`optimize`: smaller, slower; for files that go to the hub)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=optimize)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image) -> bytes:
    """The JPEG file of `img` at `JPEG_QUALITY`."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def safe_name(text: object, *, max_len: int = SAFE_NAME_MAX) -> str:
    """A file-name part made of [A-Za-z0-9._-] only: no separators, no `..`, no leading dot,
    at most `max_len` characters (a longer name keeps a hash of the whole, so two long names
    that share their start stay apart)."""
    full = str(text)
    name = _UNSAFE.sub("_", unicodedata.normalize("NFKD", full))
    name = re.sub(r"\.{2,}", "_", name).lstrip(".").rstrip(".")
    if len(name) > max_len:
        digest = hashlib.sha1(full.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = name[: max(0, max_len - 9)].rstrip(".") + "_" + digest
    return name or "_"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers (and a later run after a kill) see either the old
    file or the whole new one: a hidden temporary name in the same folder (`.NAME.tmp-PID`),
    fsync, os.replace. An existing file keeps its permission bits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = None
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot become a folder (an existing file, or under one), before
    any work is done; raises `InvalidSettings`."""
    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise InvalidSettings(f"output folder {path}: {p} exists and is not a folder; give another --out")
            break
    return path


def move_into_place(tmp: Path, out: Path) -> None:
    """Move a finished temporary output folder to `out`: in one rename when `out` is new, else
    file by file with manifest.json last, so a reader never sees a manifest before its images."""
    if not out.exists():
        os.replace(tmp, out)
        return
    files = sorted((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: p.name == MANIFEST)
    for f in files:
        dst = out / f.relative_to(tmp)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dst)


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to `out_dir`; when the block ends without an error
    its files are moved into `out_dir` (manifest last). On an error nothing reaches `out_dir`."""
    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
