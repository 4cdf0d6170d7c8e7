"""Test set-up: offline hub, a private hub cache holding tiny random models, no network.

The environment is fixed before anything imports huggingface_hub (it reads HF_HUB_OFFLINE and
HF_HUB_CACHE once at import). Tiny timm and transformers models are saved as safetensors and laid
out as a real hub cache (models--org--name/snapshots/<sha>/, refs/main), so that
`load_model("org/tiny-vit")` runs the real resolution code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="hf_fviz_tests_"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(_ROOT / "hub")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_FVIZ_CACHE", str(_ROOT / "fviz-cache"))
os.environ.pop("HF_TOKEN", None)

import pytest  # noqa: E402

from tests.hub_cache import populate_cache  # noqa: E402

HUB_CACHE = Path(os.environ["HF_HUB_CACHE"])


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's hub cache and sources (about 575 MB): left behind, every test run
    filled /tmp a little more."""
    shutil.rmtree(_ROOT, ignore_errors=True)


def _builders():
    from tests import fixtures_timm

    mods = [fixtures_timm]
    try:
        from tests import fixtures_hf
    except ImportError:  # written in parallel; absent until it lands
        pass
    else:
        mods.append(fixtures_hf)
    from tests import fixtures_openclip

    mods.append(fixtures_openclip)
    return mods


@pytest.fixture(scope="session", autouse=True)
def hub_repos() -> dict[str, str]:
    """Build every tiny repo once per session; returns {repo_id: commit_sha}."""
    src_root = _ROOT / "src"
    repos: dict[str, str] = {}
    for mod in _builders():
        for repo_id, src_dir in mod.build(src_root).items():
            repos[repo_id] = populate_cache(HUB_CACHE, repo_id, src_dir)
    return repos


@pytest.fixture(scope="session")
def hub_datasets() -> dict[str, str]:
    """Tiny image datasets as hub dataset repos (tests/fixtures_datasets.py), built on first use."""
    from tests import fixtures_datasets

    built = fixtures_datasets.build(_ROOT / "src-datasets")
    return {repo_id: populate_cache(HUB_CACHE, repo_id, folder, repo_type="dataset") for repo_id, folder in built.items()}


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _ROOT
