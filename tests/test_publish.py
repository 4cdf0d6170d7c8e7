"""`hf_fviz.publish` and `hf-fviz publish`: a local clone, and the hub as one pull request.

Only the network calls are patched (`HfApi.model_info` for the sha of main, `HfApi.create_commit`,
and `hf_hub_download` where the test needs a hub answer the offline cache cannot give); the card is
otherwise read from a real offline hub cache by the real `hf_hub_download`.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import huggingface_hub
import pytest
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard, errors
from huggingface_hub.utils import httpx
from PIL import Image

from hf_fviz.output.card import END, SPACE_URL, START, TAG, publish, update_card
from hf_fviz.cli import main
from hf_fviz.errors import PublishError
from tests.hub_cache import populate_cache
from tests.test_card import make_output

SECRET = "hf_test_SECRET_token_value_123"
CARD = (
    "---\r\n# keep this comment\r\nlicense: mit\r\ntags:\r\n  - vision   # inline note\r\n  - 'timm'\r\nlibrary_name: timm\r\n---\r\n"
    "# Tiny ResNet ✓ 模型\r\n\r\n<!-- other-tool:start -->\r\nnot ours\r\n<!-- other-tool:end -->\r\n\r\nTrailing text\r\n"
)
PR_URL = "https://huggingface.co/org/card-repo/discussions/7"


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HF_TOKEN and no token saved by `hf auth login` (a token file in a fresh temp HF_HOME)."""
    import huggingface_hub.constants as C

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(C, "HF_TOKEN_PATH", str(tmp_path / "no-home" / "token"))
    monkeypatch.setattr(C, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-home" / "stored_tokens"))
    assert huggingface_hub.get_token() is None


@pytest.fixture
def hub_repo(tmp_path: Path) -> tuple[str, str]:
    """org/card-repo in the offline hub cache with README.md (CRLF, unicode, comments); (id, sha)."""
    import huggingface_hub.constants as C

    src = tmp_path / "repo-src"
    src.mkdir()
    (src / "README.md").write_bytes(CARD.encode("utf-8"))
    (src / "config.json").write_text(json.dumps({"architecture": "resnet18", "salt": str(tmp_path)}))
    sha = populate_cache(Path(C.HF_HUB_CACHE), "org/card-repo", src)
    return "org/card-repo", sha


def _commit_info(*_args, **_kwargs) -> CommitInfo:
    return CommitInfo(
        commit_url="https://huggingface.co/org/card-repo/commit/" + "b" * 40,
        commit_message="m",
        commit_description="d",
        oid="b" * 40,
        pr_url=PR_URL,
    )


@pytest.fixture
def fake_hub(hub_repo: tuple[str, str]):
    """Patch the two network calls; yields the create_commit mock."""
    repo_id, sha = hub_repo
    with (
        mock.patch.object(HfApi, "model_info", autospec=True, return_value=SimpleNamespace(sha=sha, id=repo_id)),
        mock.patch.object(HfApi, "create_commit", autospec=True, side_effect=_commit_info) as create_commit,
    ):
        yield create_commit


def _ops(create_commit: mock.MagicMock) -> dict[str, bytes]:
    ops = create_commit.call_args.kwargs["operations"]
    assert all(isinstance(op, CommitOperationAdd) for op in ops)
    return {op.path_in_repo: op.path_or_fileobj for op in ops}


# ---------------------------------------------------------------------------- hub (pull request)
def test_publish_opens_one_pull_request(tmp_path: Path, hub_repo, fake_hub, capsys) -> None:
    repo_id, sha = hub_repo
    out_dir = make_output(tmp_path / "out", model=repo_id, n=3)
    result = publish(repo_id, out_dir, token=SECRET)

    assert fake_hub.call_count == 1
    kwargs = fake_hub.call_args.kwargs
    assert kwargs["create_pr"] is True and kwargs["parent_commit"] == sha
    assert fake_hub.call_args.args[1] == repo_id and kwargs.get("revision") in (None, "main")
    files = _ops(fake_hub)
    folder = "feature_visualizations/maco-logits"
    assert sorted(files) == sorted(["README.md", f"{folder}/grid.png", f"{folder}/000_u10.png", f"{folder}/001_u11.png", f"{folder}/002_u12.png"])
    for path, data in files.items():
        if path.endswith(".png"):
            assert Image.open(io.BytesIO(data)).format == "PNG"
    readme = files["README.md"].decode("utf-8")
    start, end = readme.index(START), readme.index(END) + len(END)
    # outside the section: the original card, with only the tag inserted in the front matter
    assert readme[:start] == CARD.replace("  - 'timm'\r\n", f"  - 'timm'\r\n  - {TAG}\r\n") + "\r\n"
    assert readme[end:] == "\r\n"
    assert "\n" not in readme[start:end].replace("\r\n", "")  # the new section follows the card's CRLF
    assert f"({folder}/grid.png)" in readme and f"{SPACE_URL}?model={repo_id}" in readme
    assert ModelCard(readme).data.tags == ["vision", "timm", TAG]
    assert result.url == PR_URL and result.base_revision == sha
    # the token goes nowhere: not in the files, not in the result, not on the console
    assert all(SECRET.encode() not in data for data in files.values())
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err + repr(result)
    # a second run proposes the very same README (idempotent)
    publish(repo_id, out_dir, token=SECRET)
    assert _ops(fake_hub)["README.md"] == files["README.md"]


def test_publish_uses_hf_token_env(tmp_path: Path, hub_repo, fake_hub, no_token, monkeypatch) -> None:
    repo_id, _ = hub_repo
    monkeypatch.setenv("HF_TOKEN", SECRET)
    publish(repo_id, make_output(tmp_path / "out", model=repo_id), token=None)
    api = fake_hub.call_args.args[0]
    assert isinstance(api, HfApi) and api.token == SECRET


def test_repo_without_readme_gets_a_minimal_card(tmp_path: Path, hub_repo, fake_hub) -> None:
    repo_id, _ = hub_repo
    missing = errors.RemoteEntryNotFoundError(
        "404 Client Error: Entry Not Found", response=httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/x"))
    )
    with mock.patch.object(huggingface_hub, "hf_hub_download", side_effect=missing):
        publish(repo_id, make_output(tmp_path / "out", model=repo_id, facets=True, method="multifaceted"), token=SECRET)
    card = ModelCard(_ops(fake_hub)["README.md"].decode())
    assert card.data.tags == [TAG] and card.data.library_name == "timm"
    assert "| facet 0 · 2 images | facet 1 · 3 images | facet 2 · 4 images |" in card.text


def test_unreadable_card_is_an_error_not_an_empty_card(tmp_path: Path, fake_hub) -> None:
    """Offline, an uncached README raises LocalEntryNotFoundError, a subclass of EntryNotFoundError:
    it must not be taken for "no card" (that would replace the whole card)."""
    with pytest.raises(PublishError, match="could not download README.md"):
        publish("org/uncached-repo", make_output(tmp_path / "out", model="org/uncached-repo"), token=SECRET)
    assert fake_hub.call_count == 0


def test_no_token_says_how_to_log_in(tmp_path: Path, fake_hub, no_token) -> None:
    with pytest.raises(PublishError, match=r"hf auth login.*HF_TOKEN"):
        publish("org/card-repo", make_output(tmp_path / "out", model="org/card-repo"))
    assert fake_hub.call_count == 0


def test_never_pushes_to_main(tmp_path: Path, fake_hub) -> None:
    with pytest.raises(PublishError, match="pull request"):
        publish("org/card-repo", make_output(tmp_path / "out", model="org/card-repo"), create_pr=False, token=SECRET)
    assert fake_hub.call_count == 0


def test_refuses_another_models_images(tmp_path: Path, fake_hub) -> None:
    with pytest.raises(PublishError, match="visualizations of org/other, not of org/card-repo"):
        publish("org/card-repo", make_output(tmp_path / "out", model="org/other"), token=SECRET)
    with pytest.raises(PublishError, match="without @revision"):
        publish("org/card-repo@main", make_output(tmp_path / "out2", model="org/card-repo"), token=SECRET)


# ---------------------------------------------------------------------------- local clone
def _clone(tmp_path: Path, card: str | None = CARD) -> Path:
    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    if card is not None:
        (clone / "README.md").write_bytes(card.encode("utf-8"))
    return clone


def test_local_dir_writes_assets_and_readme_idempotently(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    os.chmod(clone / "README.md", 0o640)
    out_dir = make_output(tmp_path / "out", n=2, size=600, noise=True)
    result = publish("org/tiny-resnet", out_dir, local_dir=clone)
    readme = (clone / "README.md").read_bytes()
    assert readme == update_card(CARD, _section_of(readme.decode())).encode()
    assert stat.S_IMODE((clone / "README.md").stat().st_mode) == 0o640
    folder = clone / "feature_visualizations" / "maco-logits"
    assert sorted(p.name for p in folder.iterdir()) == ["000_u10.png", "001_u11.png", "grid.png"]
    assert max(Image.open(folder / "000_u10.png").size) == 512
    assert (folder / "grid.png").stat().st_size <= 1_000_000
    assert result.local_dir == clone.resolve() and result.url is None
    assert not list(clone.rglob(".hf_fviz-*"))  # no temp files left
    snapshot = {p: p.read_bytes() for p in clone.rglob("*") if p.is_file()}
    publish("org/tiny-resnet", out_dir, local_dir=clone)
    assert {p: p.read_bytes() for p in clone.rglob("*") if p.is_file()} == snapshot


def _section_of(text: str) -> str:
    body = text[text.index(START) + len(START) : text.index(END)]
    return body.replace("\r\n", "\n").strip("\n")


def test_local_dir_without_readme(tmp_path: Path) -> None:
    clone = _clone(tmp_path, card=None)
    publish("org/tiny-resnet", make_output(tmp_path / "out"), local_dir=clone)
    card = ModelCard.load(clone / "README.md")
    assert card.data.tags == [TAG] and "## Feature visualizations" in card.text


def test_local_dir_refuses_to_write_outside_the_clone(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (clone / "feature_visualizations").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PublishError, match="outside"):
        publish("org/tiny-resnet", make_output(tmp_path / "out"), local_dir=clone)
    assert list(outside.iterdir()) == []
    assert (clone / "README.md").read_bytes() == CARD.encode()  # nothing written at all

    clone2 = tmp_path / "clone2"
    clone2.mkdir()
    (outside / "README.md").write_text("# elsewhere\n")
    (clone2 / "README.md").symlink_to(outside / "README.md")
    with pytest.raises(PublishError, match="outside"):
        publish("org/tiny-resnet", make_output(tmp_path / "out"), local_dir=clone2)
    assert (outside / "README.md").read_text() == "# elsewhere\n"


# ---------------------------------------------------------------------------- command line
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hf-fviz: error: "), err
    return err


def test_cli_missing_from_folder(tmp_path: Path, capsys) -> None:
    code = main(["publish", "org/tiny-resnet", "--from", str(tmp_path / "nope"), "--local-dir", str(tmp_path)])
    assert code == 2 and "no such folder" in _one_line_error(capsys)


def test_cli_no_token(tmp_path: Path, capsys, no_token, fake_hub) -> None:
    code = main(["publish", "org/card-repo", "--from", str(make_output(tmp_path / "out", model="org/card-repo")), "--pr"])
    assert code == 2 and "hf auth login" in _one_line_error(capsys)
    assert fake_hub.call_count == 0


def test_cli_foreign_manifest(tmp_path: Path, capsys) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "something else", "files": []}))
    code = main(["publish", "org/tiny-resnet", "--from", str(tmp_path), "--local-dir", str(_clone(tmp_path))])
    assert code == 2 and "not an hf-fviz manifest" in _one_line_error(capsys)


def test_cli_pr_prints_the_pull_request_url(tmp_path: Path, capsys, fake_hub) -> None:
    out_dir = make_output(tmp_path / "out", model="org/card-repo")
    code = main(["publish", "org/card-repo", "--from", str(out_dir), "--pr", "--token", SECRET, "--absolute-urls"])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == PR_URL + "\n" and SECRET not in captured.out + captured.err
    readme = _ops(fake_hub)["README.md"].decode()
    assert "(https://huggingface.co/org/card-repo/resolve/main/feature_visualizations/maco-logits/grid.png)" in readme


def test_cli_local_dir(tmp_path: Path, capsys) -> None:
    clone = _clone(tmp_path)
    code = main(["publish", "org/tiny-resnet", "--from", str(make_output(tmp_path / "out")), "--local-dir", str(clone)])
    assert code == 0 and str(clone.resolve()) in capsys.readouterr().out
    assert START in (clone / "README.md").read_text()


def test_cli_needs_exactly_one_destination(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["publish", "org/tiny-resnet", "--from", str(tmp_path), "--pr", "--local-dir", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["publish", "org/tiny-resnet", "--from", str(tmp_path)])


# ---------------------------------------------------------------------------- a real output folder
@pytest.mark.slow
def test_publish_a_real_visualize_output(tmp_path: Path) -> None:
    """The engine's own output folder (render.save of a tiny timm model) goes onto a card."""
    from hf_fviz import load_model, visualize
    from hf_fviz.output.render import save

    model = load_model("org/tiny-resnet", device="cpu")
    vis = visualize(model, units=[0, 1], steps=2, size=32, crops=2)
    out_dir = tmp_path / "real"
    save(vis, out_dir, model=model, tile=32)
    clone = _clone(tmp_path)
    result = publish("org/tiny-resnet", out_dir, local_dir=clone)
    readme = (clone / "README.md").read_bytes().decode("utf-8")
    assert readme.startswith(CARD.replace("  - 'timm'\r\n", f"  - 'timm'\r\n  - {TAG}\r\n") + "\r\n" + START)
    assert f"revision [`{model.revision[:12]}`]" in readme
    assert "| steps | 2 |" in readme and "| size | 32 px |" in readme and "| units | 0, 1 |" in readme
    labels = [model.labels[0], model.labels[1]]
    assert f"| unit 0 · {labels[0]} | unit 1 · {labels[1]} |" in readme
    assert sorted(result.files) == sorted(
        ["README.md", "feature_visualizations/maco-logits/grid.png", "feature_visualizations/maco-logits/000_u0.png", "feature_visualizations/maco-logits/001_u1.png"]
    )
    assert all((clone / f).is_file() for f in result.files)
    # the engine's grid.png is the one published (re-encoded, same pixels)
    engine_grid = Image.open(out_dir / "grid.png").convert("RGB")
    published = Image.open(clone / "feature_visualizations/maco-logits/grid.png").convert("RGB")
    assert published.size == engine_grid.size and published.tobytes() == engine_grid.tobytes()
