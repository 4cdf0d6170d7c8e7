"""Auto-attach: the hub webhook endpoint (real HTTP server, real payloads), the `watch` command
and the transformers Trainer callback (a real, short `Trainer.train()`).

Only the hub's network calls are patched: `HfApi.create_commit` (the pull request),
`HfApi.model_info` (publish reads the sha of main) and `HfApi.list_repo_tree` (which files a
commit changed). Models and cards are read by the real code from the offline hub cache.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import httpx
import pytest
import torch
from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.hf_api import RepoFile

from hf_fviz.output.card import END, START, TAG
from hf_fviz.cli import main
from hf_fviz.integrations import (
    COMMIT_MARKER,
    AutoSettings,
    FeatureVisualizationCallback,
    WatchConfig,
    Watcher,
    is_model_file,
    make_webhooks_server,
    read_commit,
    visualize_and_publish,
)
from tests.hub_cache import populate_cache

SECRET = "whsec-test-123"
REPO = "org/watched-resnet"
CARD = "---\nlicense: mit\nlibrary_name: timm\n---\n# Watched ResNet\n\nHand-written text.\n"
PR_URL = f"https://huggingface.co/{REPO}/discussions/1"
OLD_SHA = "0" * 40


def payload(repo: str, *, new: str | None, old: str | None = OLD_SHA, ref: str = "refs/heads/main", tags=(), scope="repo.content", refs=True):
    """A webhook body as the hub sends it (v3; huggingface_hub's WebhookPayload model)."""
    body = {
        "event": {"action": "update", "scope": scope},
        "repo": {
            "type": "model",
            "name": repo,
            "id": "6366c000a2abcdf2fd69a080",
            "private": False,
            "url": {"web": f"https://huggingface.co/{repo}", "api": f"https://huggingface.co/api/models/{repo}"},
            "headSha": new,
            "tags": list(tags),
            "owner": {"id": "61d2000c3c2083e1c08af22d"},
        },
        "webhook": {"id": "6390e855e30d9209411de93b", "version": 3},
    }
    if refs:
        body["updatedRefs"] = [{"ref": ref, "oldSha": old, "newSha": new}]
    return body


def _tree(files: dict[str, str]) -> list[RepoFile]:
    return [RepoFile(path=path, size=1, oid=oid) for path, oid in files.items()]


BASE_TREE = {".gitattributes": "g1", "README.md": "r1", "config.json": "c1", "model.safetensors": "w1"}
TREES: dict[str, dict[str, str]] = {OLD_SHA: BASE_TREE}


def _list_repo_tree(_self, repo_id, path_in_repo=None, *, recursive=False, revision=None, **_kw):
    return _tree(TREES[revision])


def _commit_info(*_args, **_kwargs) -> CommitInfo:
    return CommitInfo(commit_url=f"https://huggingface.co/{REPO}/commit/" + "b" * 40, commit_message="m", commit_description="d", oid="b" * 40, pr_url=PR_URL)


@pytest.fixture(scope="module")
def watched_repo(hub_repos: dict[str, str], tmp_path_factory) -> str:
    """org/watched-resnet in the offline hub cache: tiny-resnet's files plus a README; its sha."""
    import huggingface_hub.constants as C

    snap = Path(C.HF_HUB_CACHE) / "models--org--tiny-resnet" / "snapshots" / hub_repos["org/tiny-resnet"]
    src = tmp_path_factory.mktemp("watched-src")
    for f in snap.iterdir():
        shutil.copyfile(f, src / f.name)
    (src / "README.md").write_text(CARD)
    sha = populate_cache(Path(C.HF_HUB_CACHE), REPO, src)
    TREES[sha] = dict(BASE_TREE, **{"model.safetensors": "w2"})  # the new commit changed the weights
    return sha


@pytest.fixture
def fake_hub(watched_repo: str):
    with (
        mock.patch.object(HfApi, "model_info", autospec=True, return_value=SimpleNamespace(sha=watched_repo, id=REPO)),
        mock.patch.object(HfApi, "list_repo_tree", autospec=True, side_effect=_list_repo_tree) as tree,
        mock.patch.object(HfApi, "create_commit", autospec=True, side_effect=_commit_info) as create_commit,
    ):
        yield SimpleNamespace(create_commit=create_commit, list_repo_tree=tree)


def _config(state_dir: Path) -> WatchConfig:
    return WatchConfig(
        secret=SECRET,
        repos=(REPO,),
        tags=("hf-fviz",),
        state_dir=state_dir,
        token="hf_test_token",
        settings=AutoSettings(units=2, steps=3, size=64, crops=1),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The webhook server on 127.0.0.1 (a free port), as `hf-fviz watch` and the Space run it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_webhooks_server(config=_config(tmp_path_factory.mktemp("state")))
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, ssr_mode=False)
    try:
        yield SimpleNamespace(app=app, watcher=app.watcher, url=f"http://127.0.0.1:{port}{app.path}")
    finally:
        app.close()


def post(server, body, secret: str | None = SECRET) -> httpx.Response:
    headers = {"X-Webhook-Secret": secret} if secret is not None else {}
    return httpx.post(server.url, json=body, headers=headers, timeout=30)


# ---------------------------------------------------------------------------- webhook
def test_wrong_or_missing_secret_is_refused(server, fake_hub, watched_repo):
    before = len(server.watcher.results)
    assert post(server, payload(REPO, new=watched_repo), secret=None).status_code == 401
    assert post(server, payload(REPO, new=watched_repo), secret="nope").status_code == 403
    assert server.watcher.wait_idle(5) and len(server.watcher.results) == before
    fake_hub.create_commit.assert_not_called()


def test_new_commit_opens_one_pull_request_once(server, fake_hub, watched_repo, caplog):
    caplog.set_level(logging.INFO, logger="hf_fviz.watch")
    r = post(server, payload(REPO, new=watched_repo))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.json()["sha"] == watched_repo
    assert server.watcher.wait_idle(60)

    fake_hub.create_commit.assert_called_once()
    kwargs = fake_hub.create_commit.call_args.kwargs
    assert kwargs["create_pr"] is True and kwargs["parent_commit"] == watched_repo
    assert kwargs["commit_message"].startswith(COMMIT_MARKER)
    ops = {op.path_in_repo: op.path_or_fileobj for op in kwargs["operations"]}
    readme = ops.pop("README.md").decode()
    assert readme.startswith("---\nlicense: mit\nlibrary_name: timm\n")
    assert "Hand-written text." in readme and START in readme and END in readme and TAG in readme
    assert watched_repo[:12] in readme  # the section names the visualized revision
    pngs = [p for p in ops if p.endswith(".png")]
    assert len(pngs) == 3 and all(p.startswith("feature_visualizations/") for p in pngs)  # grid + 2 classes
    result = server.watcher.results[-1]
    assert result.status == "published" and result.url == PR_URL

    state = json.loads((server.watcher.config.state_dir / "handled.json").read_text())
    assert state["handled"][f"{REPO}@{watched_repo}"]["status"] == "published"

    # the hub delivers the same commit again: no second pull request
    again = post(server, payload(REPO, new=watched_repo))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert server.watcher.wait_idle(5)
    fake_hub.create_commit.assert_called_once()
    # ... nor after a restart (the handled pairs are read back from the state dir)
    restarted = Watcher(server.watcher.config)
    assert restarted.submit(payload(REPO, new=watched_repo)).status == "duplicate"


def test_card_only_commit_makes_no_pull_request(server, fake_hub):
    sha = "c" * 40  # our own PR merged: README.md and our images changed, no model file
    TREES[sha] = dict(BASE_TREE, **{"README.md": "r2", "feature_visualizations/maco-logits/grid.png": "p1"})
    r = post(server, payload(REPO, new=sha))
    assert r.status_code == 202
    assert server.watcher.wait_idle(30)
    result = server.watcher.results[-1]
    assert result.commit.sha == sha and result.status == "skipped"
    assert "README.md" in result.detail
    fake_hub.create_commit.assert_not_called()
    assert post(server, payload(REPO, new=sha)).json()["status"] == "duplicate"


def test_pull_request_refs_other_scopes_and_unwatched_repos_are_ignored(server, fake_hub):
    sha = "d" * 40
    answers = [
        post(server, payload(REPO, new=sha, ref="refs/pr/3")),  # our own PR being opened
        post(server, payload(REPO, new=sha, scope="discussion")),
        post(server, payload("someone/else", new=sha)),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["status"] for a in answers] == ["ignored"] * 3
    assert [a.json()["reason"] for a in answers] == [
        "no new commit on main (a pull request, tag or other branch)",
        "event scope 'discussion' is not a new commit",
        "someone/else is not watched (not in --repos, no tag of ['hf-fviz'])",
    ]
    bad = httpx.post(server.url, json={"hello": "world"}, headers={"X-Webhook-Secret": SECRET}, timeout=30)
    assert bad.status_code == 422
    assert server.watcher.wait_idle(5)
    fake_hub.create_commit.assert_not_called()


def test_failing_job_logs_one_line_and_commits_nothing(server, fake_hub, caplog):
    caplog.set_level(logging.INFO, logger="hf_fviz.watch")
    sha = "e" * 40
    # a repo watched through its tag, created with this commit (no oldSha), not in the cache
    r = post(server, payload("org/tagged-missing", new=sha, old=None, tags=["hf-fviz", "timm"]))
    assert r.status_code == 202
    assert server.watcher.wait_idle(30)
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage()
    assert f"org/tagged-missing@{sha}" in errors[0].getMessage() and "failed" in errors[0].getMessage()
    fake_hub.create_commit.assert_not_called()
    # failures are not remembered: replaying the webhook retries the job
    assert f"org/tagged-missing@{sha}" not in server.watcher.handled


def test_read_commit_falls_back_to_head_sha_without_updated_refs():
    found = read_commit(payload(REPO, new="f" * 40, refs=False, tags=["hf-fviz"]))
    assert found.sha == "f" * 40 and found.old_sha is None and found.tags == ("hf-fviz",)
    assert read_commit(payload(REPO, new=None, old="1" * 40)) == "main was deleted"
    assert read_commit(payload(REPO, new=None, refs=False)) == "payload has neither updatedRefs nor repo.headSha"
    assert [p for p in ["model.safetensors", "config.json", "README.md", "last-checkpoint/model.safetensors", "feature_visualizations/a/grid.png"] if is_model_file(p)] == [
        "model.safetensors",
        "config.json",
    ]


def test_watch_command_needs_a_secret(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    assert main(["watch", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "secret" in err
    assert main(["watch", "--secret", "s", "--steps", "100000"]) == 2


# ---------------------------------------------------------------------------- training
def _tiny_vit():
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = {0: "cat", 1: "dog", 2: "fish"}
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8,
        num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
    )
    torch.manual_seed(0)
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    return ViTForImageClassification(config), processor


def test_trainer_callback_puts_the_section_on_the_card(tmp_path):
    from transformers import Trainer, TrainingArguments

    model, processor = _tiny_vit()
    out = tmp_path / "run"
    out.mkdir()
    (out / "README.md").write_text("---\nlicense: mit\n---\n# My fine-tune\n")
    g = torch.Generator().manual_seed(0)
    data = [{"pixel_values": torch.rand(3, 32, 32, generator=g), "labels": i % 3} for i in range(4)]
    callback = FeatureVisualizationCallback(repo_id="me/tiny-vit-ft", classes=["dog", "fish"], steps=3, size=32, crops=1)
    args = TrainingArguments(
        output_dir=str(out), max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True,
        save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=data, processing_class=processor, callbacks=[callback]).train()

    assert len(callback.results) == 1
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n") and "# My fine-tune" in card
    assert START in card and END in card and TAG in card and "dog" in card and "fish" in card
    files = callback.results[0].files
    assert all((out / f).is_file() for f in files) and sum(f.endswith(".png") for f in files) == 3
    assert "model=me/tiny-vit-ft" in card  # the Space link names the card's repo
    # the live model was visualized from a saved copy: still trainable
    assert all(p.requires_grad for p in model.parameters())


def test_callback_needs_a_repo_id_before_training(tmp_path):
    from transformers import Trainer, TrainingArguments

    from hf_fviz.errors import PublishError

    model, _ = _tiny_vit()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=[{"pixel_values": torch.rand(3, 32, 32), "labels": 0}], callbacks=[FeatureVisualizationCallback()])
    with pytest.raises(PublishError, match="repo_id"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_visualize_and_publish_a_live_timm_model(tmp_path):
    import timm

    model = timm.create_model("test_resnet", num_classes=3, pretrained=False)
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, 64, 64))
    model.train()
    clone = tmp_path / "clone"
    clone.mkdir()
    result = visualize_and_publish(model, repo_id="me/my-resnet", units=2, steps=2, size=64, crops=1, local_dir=clone)
    assert START in (clone / "README.md").read_text()
    assert sum(f.endswith(".png") for f in result.files) == 3 and all((clone / f).is_file() for f in result.files)
    assert model.training and all(p.requires_grad for p in model.parameters())  # the copy was frozen, not the model


def test_space_without_secret_launches_without_webhook(monkeypatch, caplog):
    from hf_fviz.integrations import launch_with_webhooks

    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    demo = mock.Mock()
    assert launch_with_webhooks(demo, server_name="127.0.0.1") is None
    demo.launch.assert_called_once_with(server_name="127.0.0.1")
    assert any("webhook disabled" in r.getMessage() for r in caplog.records)


def test_the_space_serves_the_webhook_when_its_secret_is_set(monkeypatch, tmp_path):
    """space/app.py's launch() mounts the same endpoint next to the UI when WEBHOOK_SECRET is set."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("hf_fviz_space_app_webhook", root / "space" / "app.py")
    space = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(space)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HF_FVIZ_STATE_DIR", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = space.build_demo()
    watcher = space.launch(demo, server_name="127.0.0.1", server_port=port, quiet=True, ssr_mode=False,
                           prevent_thread_lock=True)
    try:
        assert watcher is not None
        url = f"http://127.0.0.1:{port}/webhooks/hf-fviz"
        assert httpx.post(url, json={}, headers={"X-Webhook-Secret": "wrong"}, timeout=30).status_code == 403
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200  # the UI is still there
    finally:
        demo.close()


def test_the_webhook_side_never_imports_transformers():
    """`hf-fviz watch` and the Space's webhook run without transformers; only the Trainer
    callback needs it. A fresh interpreter, since this test session has imported it already."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hf_fviz.integrations import COMMIT_MARKER, WatchConfig, launch_with_webhooks, make_webhooks_server, visualize_and_publish\n"
        "import hf_fviz.cli\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
        "from hf_fviz.integrations import FeatureVisualizationCallback\n"
        "assert 'transformers' in sys.modules and FeatureVisualizationCallback.__module__ == 'hf_fviz.integrations.trainer'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
