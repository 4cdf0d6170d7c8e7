"""Lay a folder of files out as a huggingface_hub cache entry (the documented cache layout)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def populate_cache(cache_dir: Path, repo_id: str, src_dir: Path, *, revision: str = "main", repo_type: str = "model") -> str:
    """Copy `src_dir` into `cache_dir` as `repo_id` at `revision`; returns the fake commit sha
    (derived from the content, so a changed model gets a new sha)."""
    files = sorted(p for p in Path(src_dir).rglob("*") if p.is_file())
    digest = hashlib.sha1()
    for f in files:
        digest.update(str(f.relative_to(src_dir)).encode())
        digest.update(hashlib.sha1(f.read_bytes()).digest())
    commit = digest.hexdigest()
    repo_dir = Path(cache_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for f in files:
        data = f.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        dst = snapshot / f.relative_to(src_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.symlink(os.path.relpath(blob, dst.parent), dst)
    return commit
