"""Model id -> local folder + owning library, with the safety checks done before any weights load.

A model id is a hub id (`org/name`, optional `@revision`), a local directory in hub layout, or
`builtin:NAME`. The owning library comes from the repo's files: `config.json` (timm or
transformers) or `open_clip_config.json` (OpenCLIP); a repo with both (LAION's CLIP repos carry a
transformers copy) goes to the library its card names in `library_name`, else to `config.json`. The hub is reached only through huggingface_hub, so `HF_HUB_OFFLINE=1` makes
everything work from the cache. Pickle weights and remote code are refused unless allowed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import (
    CorruptWeights,
    GatedRepo,
    InvalidModelId,
    ModelNotFound,
    NotAVisionModel,
    RemoteCodeRequired,
    UnsafeWeights,
    UnsupportedArchitecture,
)

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}$")
SAFE_WEIGHTS = (".safetensors",)
PICKLE_WEIGHTS = (".bin", ".pth", ".pt", ".ckpt", ".pkl")
_DOWNLOAD = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]  # *.model: sentencepiece tokenizers
OPEN_CLIP_CONFIG = "open_clip_config.json"
Library = Literal["timm", "transformers", "open_clip"]


@dataclass(frozen=True)
class Resolved:
    """Where a model's files are, which library owns them, and at which revision."""

    model_id: str  # what the user asked for, without @revision
    folder: Path
    library: Library
    config: dict[str, Any]  # config.json, or open_clip_config.json for OpenCLIP
    revision: str | None  # commit sha when known


def parse_model_id(model_id: str, revision: str | None = None) -> tuple[str, str | None]:
    """Split `org/name@rev`; validate both parts. Local paths and builtins pass through."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidModelId("empty model id: give a hub id like 'timm/resnet50.a1_in1k', a local folder, or builtin:mobilenetv2")
    model_id = model_id.strip()
    if model_id.startswith("builtin:") or Path(model_id).expanduser().is_dir():
        return model_id, revision
    repo, sep, rev = model_id.partition("@")
    if sep:
        if revision is not None and revision != rev:
            raise InvalidModelId(f"two revisions given for {repo}: '@{rev}' and --revision {revision}")
        revision = rev
    if not _REPO_ID.match(repo) or ".." in repo or repo.endswith((".", "-")):
        raise InvalidModelId(
            f"malformed model id '{model_id}': expected 'org/name[@revision]', a local folder, or builtin:NAME"
        )
    if revision is not None and (not _REVISION.match(revision) or ".." in revision):
        raise InvalidModelId(f"malformed revision '{revision}' in '{model_id}'")
    return repo, revision


def resolve(model_id: str, *, revision: str | None = None, allow_pickle: bool = False,
            trust_remote_code: bool = False) -> Resolved:
    """Find (download or read from the cache) a model's files and check they are safe to load."""
    repo_id, revision = parse_model_id(model_id, revision)
    if repo_id.startswith("builtin:"):
        from .builtin import builtin_dir

        folder = builtin_dir(repo_id.removeprefix("builtin:"))
        return Resolved(repo_id, folder, "timm", _read_config(folder, repo_id), None)
    local = Path(repo_id).expanduser()
    if local.is_dir():
        files = [str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()]
        card = _card_library(local / "README.md") if _ambiguous(files) else None
        library, config = _detect(local, files, repo_id, trust_remote_code, card)
        _check_weights(files, repo_id, allow_pickle)
        return Resolved(repo_id, local.resolve(), library, config, None)

    config_path = _hub_call(lambda: _download_config(repo_id, revision), repo_id, revision)
    folder = Path(config_path).parent
    sha = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    files = _hub_call(lambda: _list_files(repo_id, sha or revision, folder), repo_id, revision)
    card = _card_library(_download_card(repo_id, sha or revision)) if _ambiguous(files) else None
    library, config = _detect(folder, files, repo_id, trust_remote_code, card)
    _check_weights(files, repo_id, allow_pickle)
    patterns = _DOWNLOAD + (["*" + ext for ext in PICKLE_WEIGHTS] if allow_pickle else [])
    if trust_remote_code:
        patterns.append("*.py")
    snapshot = _hub_call(lambda: _snapshot(repo_id, sha or revision, patterns), repo_id, revision)
    return Resolved(repo_id, Path(snapshot), library, config, sha)


# ---------------------------------------------------------------------------- hub calls
def _download_config(repo_id: str, revision: str | None) -> str:
    """`config.json`, else `open_clip_config.json` (OpenCLIP repos may have no config.json)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, "config.json", revision=revision)
    except hf_errors.EntryNotFoundError as missing:  # offline, LocalEntryNotFoundError is one too
        try:
            return hf_hub_download(repo_id, OPEN_CLIP_CONFIG, revision=revision)
        except hf_errors.EntryNotFoundError:
            raise missing from None


def _download_card(repo_id: str, revision: str | None) -> Path | None:
    """The repo's README.md, or None when it has none (or it cannot be fetched): a card is only a hint."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, "README.md", revision=revision))
    except Exception:  # noqa: BLE001 - no card, offline, ...: fall back to config.json
        return None


def _list_files(repo_id: str, revision: str | None, folder: Path) -> list[str]:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return [str(p.relative_to(folder)) for p in folder.rglob("*")]
    from huggingface_hub import HfApi

    return HfApi().list_repo_files(repo_id, revision=revision)


def _snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, revision=revision, allow_patterns=patterns)


def _hub_call(fn, repo_id: str, revision: str | None):
    """Run a huggingface_hub call, mapping its errors to one-line user errors."""
    from huggingface_hub import errors as hf_errors

    at = f" at revision '{revision}'" if revision else ""
    try:
        return fn()
    except hf_errors.GatedRepoError:
        raise GatedRepo(
            f"{repo_id} is gated: accept its terms on https://huggingface.co/{repo_id} and log in (`hf auth login` or HF_TOKEN)"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise ModelNotFound(f"revision '{revision}' not found in {repo_id}") from None
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled):
        # LocalEntryNotFoundError subclasses EntryNotFoundError: it must come first.
        raise ModelNotFound(
            f"model {repo_id}{at} is not in the local cache and the hub cannot be reached (offline)"
        ) from None
    except hf_errors.EntryNotFoundError:
        raise UnsupportedArchitecture(
            f"{repo_id}{at} has no config.json or {OPEN_CLIP_CONFIG}: not a timm, transformers or OpenCLIP model"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise ModelNotFound(
            f"model {repo_id} not found on the hub (or it is private: log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    except hf_errors.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise GatedRepo(f"access to {repo_id} denied (HTTP {status}): log in with `hf auth login` or set HF_TOKEN") from None
        raise ModelNotFound(f"could not fetch {repo_id}: {str(err).splitlines()[0]}") from None


# ---------------------------------------------------------------------------- checks
def _read_config(folder: Path, repo_id: str, name: str = "config.json") -> dict[str, Any]:
    path = Path(folder) / name
    if not path.is_file():
        raise UnsupportedArchitecture(
            f"{repo_id} has no config.json or {OPEN_CLIP_CONFIG}: not a timm, transformers or OpenCLIP model"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptWeights(f"{repo_id}: {name} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CorruptWeights(f"{repo_id}: {name} is not a JSON object")
    return config


def _ambiguous(files: list[str]) -> bool:
    return "config.json" in files and OPEN_CLIP_CONFIG in files


def _card_library(card: Path | None) -> str | None:
    """`library_name` from a model card's YAML metadata, or None."""
    if card is None or not Path(card).is_file():
        return None
    try:
        from huggingface_hub import metadata_load

        value = (metadata_load(card) or {}).get("library_name")
    except Exception:  # noqa: BLE001 - a damaged card is no reason to refuse a model
        return None
    return str(value) if value else None


def _detect(folder: Path, files: list[str], repo_id: str, trust_remote_code: bool,
            card_library: str | None) -> tuple[Library, dict[str, Any]]:
    """(library, its config): OpenCLIP when the repo has only `open_clip_config.json`, or both
    configs and a card saying `library_name: open_clip`; else what `config.json` describes."""
    if OPEN_CLIP_CONFIG in files and ("config.json" not in files or card_library == "open_clip"):
        config = _read_config(folder, repo_id, OPEN_CLIP_CONFIG)
        if not isinstance(config.get("model_cfg"), dict):
            raise UnsupportedArchitecture(f"{repo_id}: {OPEN_CLIP_CONFIG} has no model_cfg: not an OpenCLIP model")
        return "open_clip", config
    config = _read_config(folder, repo_id)
    return _library(config, repo_id, trust_remote_code), config


def _library(config: dict[str, Any], repo_id: str, trust_remote_code: bool) -> Literal["timm", "transformers"]:
    """timm repos carry `architecture` + `pretrained_cfg`; transformers repos carry `model_type`."""
    if "auto_map" in config and not trust_remote_code:
        raise RemoteCodeRequired(
            f"{repo_id} ships its own model code (auto_map in config.json); it runs arbitrary Python. "
            "Pass --trust-remote-code (trust_remote_code=True) if you trust it"
        )
    # `model_type` first: transformers' TimmWrapper configs carry timm keys too.
    if "model_type" in config or "architectures" in config:
        return "transformers"
    if "architecture" in config and ("pretrained_cfg" in config or "model_args" in config or "num_classes" in config):
        return "timm"
    raise NotAVisionModel(f"{repo_id}: config.json is neither a timm nor a transformers model config")


def _check_weights(files: list[str], repo_id: str, allow_pickle: bool) -> None:
    names = [f.lower() for f in files]
    if any(n.endswith(SAFE_WEIGHTS) for n in names):
        return
    pickles = [f for f in files if f.lower().endswith(PICKLE_WEIGHTS)]
    if pickles:
        if allow_pickle:
            return
        raise UnsafeWeights(
            f"{repo_id} has only pickle weights ({pickles[0]}), which can run code when loaded; "
            "pass --allow-pickle (allow_pickle=True) if you trust it"
        )
    raise ModelNotFound(f"{repo_id} has no weights (no .safetensors file)")
