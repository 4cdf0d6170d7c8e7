"""Publishing an output folder to a model card: into a local clone (files written atomically)
or as one hub pull request (`create_commit(create_pr=True, parent_commit=<sha the card was read
at>)`: never a push to main)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PublishError
from .card_assets import AssetLimits, asset_folder, prepare_assets
from .card_meta import END, START, _one_line, update_card
from .card_section import _CONTROL, render_section
from .manifest import Manifest
from .writer import atomic_write

MAX_CARD_BYTES = 10_000_000  # a README.md above this is refused, not read into memory and rewritten


@dataclass(frozen=True)
class PublishResult:
    """What `publish` did: the pull-request URL (hub) or the files written (local clone)."""

    url: str | None
    files: tuple[str, ...]
    readme: str
    base_revision: str | None = None
    local_dir: Path | None = None


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _check_repo_id(model_id: str) -> str:
    if "@" in model_id:
        raise PublishError(f"{model_id}: publish takes the repo id without @revision (the card is updated on main)")
    if not _REPO_ID.match(model_id) or ".." in model_id or model_id.endswith((".", "-")):
        raise PublishError(f"{model_id!r} is not a hub model id (expected org/name)")
    return model_id


def _check_model(output: Manifest, repo_id: str) -> None:
    """Refuse to put one model's images on another model's card (local paths and builtins pass)."""
    made_from = output.model.split("@", 1)[0]
    if _REPO_ID.match(made_from) and not Path(output.model).exists() and made_from != repo_id:
        raise PublishError(f"{output.path} holds visualizations of {made_from}, not of {repo_id}")


def _read_card(path: Path, where: str) -> str:
    """A card's text, refusing a huge or non-UTF-8 file with one line."""
    size = path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise PublishError(f"{where} is {size:,} bytes, over the {MAX_CARD_BYTES:,}-byte limit for a model card; "
                           "shrink it first")
    return _decode(path.read_bytes(), where)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PublishError(f"{where} is not UTF-8 text; cannot edit it safely") from None


def publish(
    model_id: str,
    from_dir: str | os.PathLike[str],
    *,
    local_dir: str | os.PathLike[str] | None = None,
    create_pr: bool = True,
    token: str | None = None,
    absolute_urls: bool = False,
    url_revision: str = "main",
    limits: AssetLimits = AssetLimits(),
    commit_message: str | None = None,
) -> PublishResult:
    """Add the visualizations in `from_dir` to the card of `model_id`.

    With `local_dir`, write into that local clone (assets + README.md, atomically); otherwise open
    one pull request on the hub with the assets and the new README.md. `create_pr` must stay True:
    hf_fviz never pushes to main (use `local_dir` and push yourself if you own the repo).
    """
    repo_id = _check_repo_id(model_id)
    output = Manifest.read(from_dir)
    _check_model(output, repo_id)
    if local_dir is not None:
        return _publish_local(repo_id, output, Path(local_dir), absolute_urls=absolute_urls, url_revision=url_revision, limits=limits)
    if not create_pr:
        raise PublishError("hf_fviz publishes to the hub only as a pull request; to commit directly, use --local-dir on a clone and push it")
    return _publish_hub(
        repo_id, output, token=token, absolute_urls=absolute_urls, url_revision=url_revision, limits=limits, commit_message=commit_message
    )


def _publish_local(
    repo_id: str, output: Manifest, local_dir: Path, *, absolute_urls: bool, url_revision: str, limits: AssetLimits
) -> PublishResult:
    if not local_dir.is_dir():
        raise PublishError(f"{local_dir}: no such folder (give a local clone of {repo_id})")
    root = local_dir.resolve()
    readme_path = _target(root, "README.md")
    text = _read_card(readme_path, str(readme_path)) if readme_path.is_file() else None
    assets = prepare_assets(output, limits=limits)
    section = render_section(output, assets, repo_id=repo_id, absolute_urls=absolute_urls, url_revision=url_revision)
    new_text = update_card(text, section, library=output.library)
    targets = [(_target(root, a.path_in_repo), a.data) for a in assets.all]  # check every path before writing any
    for path, data in [*targets, (readme_path, new_text.encode("utf-8"))]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(root):
            raise PublishError(f"refusing to write {path}: its folder resolves outside {root}")
        atomic_write(path, data)
    return PublishResult(
        url=None,
        files=tuple(a.path_in_repo for a in assets.all) + ("README.md",),
        readme=new_text,
        base_revision=None,
        local_dir=root,
    )


def _target(root: Path, path_in_repo: str) -> Path:
    """`root/path_in_repo` with symlinks resolved; refuses anything that lands outside the clone."""
    if path_in_repo.startswith("/") or ".." in Path(path_in_repo).parts:
        raise PublishError(f"refusing to write {path_in_repo!r}: not a path inside the clone")
    path = (root / path_in_repo).resolve()
    if not path.is_relative_to(root) or path == root:
        raise PublishError(f"refusing to write {path_in_repo}: it resolves outside {root} (symlink?)")
    return path


def _resolve_token(token: str | None) -> str:
    if token:
        return token
    import huggingface_hub

    found = huggingface_hub.get_token()  # HF_TOKEN, then the token saved by `hf auth login`
    if not found:
        raise PublishError("publishing to the hub needs a token: run `hf auth login` or set HF_TOKEN (or pass --token)")
    return found


def _read_hub_card(api: Any, repo_id: str, token: str) -> tuple[str, str | None]:
    """(commit sha of main, README.md text at that commit or None when the repo has none)."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        sha = api.model_info(repo_id).sha
        if not sha:
            raise PublishError(f"{repo_id}: the hub returned no commit sha for main")
        try:
            path = huggingface_hub.hf_hub_download(repo_id, "README.md", revision=sha, token=token)
        except errors.LocalEntryNotFoundError:
            # Also an EntryNotFoundError, but it means "could not fetch", not "no card": treating
            # it as a missing card would replace the whole card with a minimal one.
            raise PublishError(f"{repo_id}: could not download README.md (offline or no connection to the hub)") from None
        except errors.EntryNotFoundError:
            return sha, None
    except errors.OfflineModeIsEnabled:
        raise PublishError("HF_HUB_OFFLINE=1 is set: opening a pull request needs the network (or use --local-dir)") from None
    except errors.GatedRepoError:
        raise PublishError(f"{repo_id}: gated repo; accept its conditions on the hub with the account of your token") from None
    except errors.RepositoryNotFoundError:
        raise PublishError(f"{repo_id}: no such model repo on the hub, or your token cannot see it") from None
    except errors.HfHubHTTPError as err:
        raise PublishError(f"{repo_id}: the hub refused the request ({_one_line(err)})") from None
    except _TRANSPORT_ERRORS as err:
        raise PublishError(f"{repo_id}: could not reach the hub ({_one_line(err)})") from None
    return sha, _read_card(Path(path), f"{repo_id}/README.md")


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        from huggingface_hub.utils import httpx  # httpx2 in huggingface_hub 2.x, httpx in 1.x
    except ImportError:  # pragma: no cover - older huggingface_hub
        return (ConnectionError,)
    return (httpx.TransportError, ConnectionError)


_TRANSPORT_ERRORS = _transport_errors()


def _publish_hub(
    repo_id: str,
    output: Manifest,
    *,
    token: str | None,
    absolute_urls: bool,
    url_revision: str,
    limits: AssetLimits,
    commit_message: str | None,
) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, HfApi, errors

    from .. import __version__

    token = _resolve_token(token)
    api = HfApi(token=token, library_name="hf_fviz", library_version=__version__)
    sha, text = _read_hub_card(api, repo_id, token)
    assets = prepare_assets(output, limits=limits)
    section = render_section(output, assets, repo_id=repo_id, absolute_urls=absolute_urls, url_revision=url_revision)
    new_text = update_card(text, section, library=output.library)
    operations = [CommitOperationAdd(path_in_repo=a.path_in_repo, path_or_fileobj=a.data) for a in assets.all]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=new_text.encode("utf-8")))
    layer = _CONTROL.sub(" ", ", ".join(output.layers))[:80]
    try:
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Add feature visualizations of {layer} (hf_fviz)",
            commit_description=(
                f"Feature visualizations ({output.method}, layer {layer}, {len(output.items)} images) made with "
                f"hf_fviz {output.version or __version__}. Images under `{asset_folder(output)}/`; the card section "
                f"sits between `{START}` and `{END}` and can be regenerated with `hf-fviz publish`."
            ),
            create_pr=True,
            parent_commit=sha,
        )
    except errors.HfHubHTTPError as err:
        raise PublishError(f"{repo_id}: the hub refused the pull request ({_one_line(err)})") from None
    except _TRANSPORT_ERRORS as err:
        raise PublishError(f"{repo_id}: could not reach the hub ({_one_line(err)})") from None
    return PublishResult(
        url=info.pr_url or info.commit_url,
        files=tuple(op.path_in_repo for op in operations),
        readme=new_text,
        base_revision=sha,
    )
