"""The hub webhook: a new commit on `main` of a watched model repo gets a pull request with
feature visualizations (see `hf_fviz.integrations` for the whole story).

The endpoint decides fast, in the request (`Watcher.submit`: scope, repo, watched, handled);
one background thread runs the jobs in order (`Watcher.run_job`); handled commits are kept in
`STATE_DIR/handled.json`. Served by huggingface_hub's `WebhooksServer` (Gradio + FastAPI).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotations at runtime.

import fnmatch
import json
import logging
import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import FvizError, InvalidSettings
from ..settings import CPU_JOB, Profile, Settings
from .to_card import COMMIT_MARKER, visualize_and_publish

logger = logging.getLogger("hf_fviz.watch")

WEBHOOK_PATH = "hf-fviz"  # served at /webhooks/hf-fviz
DEFAULT_TAGS = ("hf-fviz",)
STATE_FILE = "handled.json"
# A commit re-renders the card only when it changed one of these files at the repo root: the
# weights, the model config or the preprocessing. Sub-folders (Trainer's `last-checkpoint/`) and
# everything else (README.md, our `feature_visualizations/`, .gitattributes) are ignored.
MODEL_FILES = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.bin.index.json",
    "*.pth",
    "*.pt",
    "*.ckpt",
    "config.json",
    "preprocessor_config.json",
)


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True, kw_only=True)
class AutoSettings(Settings):
    """What an automatic job visualizes: the first `units` classes (or first channels of `layer`,
    default the model's last layer), with the CPU_JOB profile's defaults, which finish in minutes
    on a CPU. The run settings are the library's `Settings`; this adds only the targets."""

    layer: str | None = None
    units: int = CPU_JOB.default_units
    steps: int = CPU_JOB.default_steps
    size: int = CPU_JOB.default_size
    crops: int = CPU_JOB.default_crops

    def _check(self) -> None:
        super()._check()
        if not isinstance(self.units, int) or isinstance(self.units, bool) or self.units < 1:
            raise InvalidSettings(f"units must be a positive integer, got {self.units!r}")

    def run_settings(self) -> Settings:
        """The run's `Settings`, without the targets."""
        return Settings(**{name: getattr(self, name) for name in Settings.field_names()})


@dataclass(frozen=True)
class WatchConfig:
    """The webhook server's settings.

    A repo is watched when it is in `repos`, or when one of its hub tags is in `tags`; with both
    empty, every model repo the hub webhook reports is watched (the webhook's own repo filter on
    huggingface.co/settings/webhooks decides). `secret` is required unless `allow_no_secret`:
    an open endpoint would let anyone queue jobs.
    """

    secret: str | None = None
    repos: tuple[str, ...] = ()
    tags: tuple[str, ...] = DEFAULT_TAGS
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    token: str | None = None
    settings: AutoSettings = AutoSettings()
    profile: Profile | None = CPU_JOB  # the caps of a job; None lifts them (a GPU host)
    path: str = WEBHOOK_PATH
    allow_no_secret: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "repos", tuple(r.strip() for r in self.repos if r.strip()))
        object.__setattr__(self, "tags", tuple(t.strip() for t in self.tags if t.strip()))
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        if not self.secret and not self.allow_no_secret:
            raise InvalidSettings("the webhook needs a secret: pass --secret or set WEBHOOK_SECRET (the same value as on huggingface.co/settings/webhooks)")
        if self.secret and not self.secret.isascii():
            raise InvalidSettings("the webhook secret must be ASCII (the hub sends it in an HTTP header)")
        if self.profile is None:
            self.settings.check()
        else:
            self.profile.check(self.settings, units=self.settings.units)

    @classmethod
    def from_env(cls, **overrides: Any) -> "WatchConfig":
        """Read WEBHOOK_SECRET, HF_FVIZ_WATCH_REPOS, HF_FVIZ_WATCH_TAGS (comma lists),
        HF_FVIZ_STATE_DIR, HF_TOKEN and HF_FVIZ_WATCH_{UNITS,STEPS,SIZE,CROPS}."""
        env = os.environ
        kwargs: dict[str, Any] = {"secret": env.get("WEBHOOK_SECRET") or None, "token": env.get("HF_TOKEN") or None}
        if "HF_FVIZ_WATCH_REPOS" in env:
            kwargs["repos"] = tuple(env["HF_FVIZ_WATCH_REPOS"].split(","))
        if "HF_FVIZ_WATCH_TAGS" in env:
            kwargs["tags"] = tuple(env["HF_FVIZ_WATCH_TAGS"].split(","))
        if env.get("HF_FVIZ_STATE_DIR"):
            kwargs["state_dir"] = Path(env["HF_FVIZ_STATE_DIR"])
        numbers = {}
        for name in ("units", "steps", "size", "crops"):
            raw = env.get(f"HF_FVIZ_WATCH_{name.upper()}")
            if raw:
                try:
                    numbers[name] = int(raw)
                except ValueError:
                    raise InvalidSettings(f"HF_FVIZ_WATCH_{name.upper()} must be an integer, got {raw!r}") from None
        if numbers:
            kwargs["settings"] = AutoSettings(**numbers)
        kwargs.update(overrides)
        return cls(**kwargs)


def default_state_dir() -> Path:
    """HF_FVIZ_STATE_DIR, else /data/hf_fviz (a Space's persistent storage) when it exists,
    else ~/.cache/hf_fviz/watch."""
    if os.environ.get("HF_FVIZ_STATE_DIR"):
        return Path(os.environ["HF_FVIZ_STATE_DIR"])
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/hf_fviz")
    return Path.home() / ".cache" / "hf_fviz" / "watch"


# ---------------------------------------------------------------------------- payload
@dataclass(frozen=True)
class Commit:
    """A new commit on `main` of a model repo, as read from one webhook payload."""

    repo_id: str
    sha: str
    old_sha: str | None
    tags: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.repo_id}@{self.sha}"


@dataclass(frozen=True)
class Decision:
    """What the endpoint did with a payload (also its JSON answer)."""

    status: str  # "queued" | "ignored" | "duplicate"
    reason: str
    commit: Commit | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if self.commit is not None:
            out.update(repo=self.commit.repo_id, sha=self.commit.sha)
        return out


def read_commit(payload: dict[str, Any]) -> Commit | str:
    """The new `main` commit a payload reports, or the reason it reports none.

    Follows the hub's webhook format (v3): `event.scope` is `repo.content` for new commits (also
    for a new pull request, whose ref is `refs/pr/N`), `updatedRefs` lists the moved refs, and
    `repo.headSha` is the head of `main` on repo events (huggingface_hub's pydantic model spells it
    `head_sha` and would drop it, so the raw JSON is read).
    """
    event = payload.get("event") or {}
    repo = payload.get("repo") or {}
    scope = str(event.get("scope") or "")
    if scope != "repo.content" and not scope.startswith("repo.content."):
        return f"event scope {scope or 'missing'!r} is not a new commit"
    if repo.get("type") != "model":
        return f"repo type {repo.get('type')!r} is not a model"
    name = repo.get("name")
    if not isinstance(name, str) or "/" not in name:
        return "payload has no repo name"
    refs = payload.get("updatedRefs")
    old_sha: str | None = None
    if isinstance(refs, list):
        main = next((r for r in refs if isinstance(r, dict) and r.get("ref") == "refs/heads/main"), None)
        if main is None:
            return "no new commit on main (a pull request, tag or other branch)"
        sha, old_sha = main.get("newSha"), main.get("oldSha")
        if not sha:
            return "main was deleted"
    else:
        sha = repo.get("headSha")
        if not sha:
            return "payload has neither updatedRefs nor repo.headSha"
    tags = repo.get("tags") if isinstance(repo.get("tags"), list) else []
    return Commit(name, str(sha), str(old_sha) if old_sha else None, tuple(str(t) for t in tags))


def is_model_file(path: str) -> bool:
    return "/" not in path and any(fnmatch.fnmatchcase(path, p) for p in MODEL_FILES)


def changed_files(api: Any, repo_id: str, old_sha: str, new_sha: str) -> set[str]:
    """Paths that differ between two commits (added, removed or with another blob id)."""

    from huggingface_hub.hf_api import RepoFile

    def tree(rev: str) -> dict[str, str]:
        # the git blob id changes with the content (for LFS files, with the pointer)
        return {e.path: e.blob_id for e in api.list_repo_tree(repo_id, recursive=True, revision=rev) if isinstance(e, RepoFile)}

    before, after = tree(old_sha), tree(new_sha)
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


# ---------------------------------------------------------------------------- state
class HandledStore:
    """Handled commits, kept in `state_dir/handled.json` (written atomically after each job)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._items = dict(data.get("handled", {}))
            except (OSError, ValueError, AttributeError) as err:
                broken = self.path.with_suffix(f".broken-{int(time.time())}.json")
                os.replace(self.path, broken)
                logger.warning("hf-fviz watch: %s was unreadable (%s); moved to %s, starting empty", self.path, err, broken.name)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)

    def add(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = record
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".handled-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"version": 1, "handled": self._items}, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise


# ---------------------------------------------------------------------------- watcher
@dataclass(frozen=True)
class JobResult:
    """How a job ended: "published" (with the PR url), "skipped" (with why) or "failed"."""

    commit: Commit
    status: str
    detail: str
    url: str | None = None
    seconds: float = 0.0


class Watcher:
    """Decides on payloads (fast, in the request) and runs jobs (one background thread, FIFO).

    `run_job` is the whole job: skip when no model file changed, else load at the commit,
    visualize, save, publish as a pull request. Results go to `results` and the state file.
    """

    def __init__(self, config: WatchConfig) -> None:
        self.config = config
        self.handled = HandledStore(config.state_dir)
        self.results: list[JobResult] = []
        self._queue: "queue.Queue[Commit | None]" = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    # -- request side
    def watched(self, commit: Commit) -> bool:
        if not self.config.repos and not self.config.tags:
            return True
        return commit.repo_id in self.config.repos or bool(set(commit.tags) & set(self.config.tags))

    def submit(self, payload: dict[str, Any]) -> Decision:
        """Decide on one payload; queue a job for a new, watched, unhandled commit."""
        found = read_commit(payload)
        if isinstance(found, str):
            return Decision("ignored", found)
        if not self.watched(found):
            return Decision("ignored", f"{found.repo_id} is not watched (not in --repos, no tag of {list(self.config.tags)})", found)
        with self._lock:
            if found.key in self._pending:
                return Decision("duplicate", "this commit is already queued", found)
            if found.key in self.handled:
                return Decision("duplicate", f"this commit was already handled ({self.handled.get(found.key).get('status')})", found)
            self._pending.add(found.key)
        self.start()
        self._queue.put(found)
        logger.info("hf-fviz watch: queued %s", found.key)
        return Decision("queued", "a job will visualize this commit and open a pull request", found)

    # -- worker side
    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="hf-fviz-watch", daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def _work(self) -> None:
        while True:
            commit = self._queue.get()
            if commit is None:
                return
            start = time.perf_counter()
            try:
                result = self.run_job(commit)
            except Exception as err:  # one line per failure; the traceback only at debug level
                result = JobResult(commit, "failed", f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")
                logger.debug("hf-fviz watch: traceback of %s", commit.key, exc_info=True)
            result = replace(result, seconds=round(time.perf_counter() - start, 2))
            if result.status == "failed":
                logger.error("hf-fviz watch: %s failed after %.1f s: %s", commit.key, result.seconds, result.detail)
            else:
                logger.info("hf-fviz watch: %s %s: %s", commit.key, result.status, result.url or result.detail)
                # failed jobs are not remembered: replaying the webhook (hub settings > Activity) retries them
                self.handled.add(commit.key, {"status": result.status, "detail": result.detail, "url": result.url, "time": time.time()})
            with self._idle:
                self.results.append(result)
                self._pending.discard(commit.key)
                self._idle.notify_all()

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        from .. import __version__

        return HfApi(token=self.config.token, library_name="hf_fviz", library_version=__version__)

    def run_job(self, commit: Commit) -> JobResult:
        if commit.old_sha:
            changed = changed_files(self._api(), commit.repo_id, commit.old_sha, commit.sha)
            if not any(is_model_file(p) for p in changed):
                shown = ", ".join(sorted(changed)[:5]) or "nothing"
                return JobResult(commit, "skipped", f"no model file changed ({shown})")
        message = f"{COMMIT_MARKER} Feature visualizations for {commit.sha[:12]}"
        job = self.config.settings
        result = visualize_and_publish(
            f"{commit.repo_id}@{commit.sha}",
            repo_id=commit.repo_id,
            layer=job.layer,
            units=job.units,
            settings=job.run_settings(),
            create_pr=True,
            token=self.config.token,
            commit_message=message,
        )
        return JobResult(commit, "published", "pull request opened", url=result.url)


# ---------------------------------------------------------------------------- server
@dataclass
class WebhookApp:
    """The served pieces: huggingface_hub's `WebhooksServer`, its Gradio `ui`, our `watcher`."""

    server: Any
    ui: Any
    watcher: Watcher

    @property
    def path(self) -> str:
        return f"/webhooks/{self.watcher.config.path.strip('/')}"

    def launch(self, **launch_kwargs: Any) -> None:
        """Serve (blocks unless `prevent_thread_lock=True`); never opens a public share link."""
        launch_kwargs.setdefault("share", False)
        self.server.launch(**launch_kwargs)

    def close(self, timeout: float | None = 5.0) -> None:
        self.ui.close()
        self.watcher.stop(timeout)


def make_webhooks_server(ui: Any = None, config: WatchConfig | None = None) -> WebhookApp:
    """huggingface_hub's `WebhooksServer` (Gradio + FastAPI) with our endpoint at
    `/webhooks/<config.path>` next to `ui` (default: a status page). Call `.launch(...)` to serve."""
    try:
        import gradio as gr
        from huggingface_hub import WebhooksServer
        from starlette.requests import Request
        from starlette.responses import JSONResponse
    except ImportError as err:  # gradio (and with it fastapi, pydantic) is the `space` extra
        raise FvizError(f"the webhook server needs gradio: pip install 'hf_fviz[space]' ({err})") from None
    config = config or WatchConfig.from_env()
    watcher = Watcher(config)
    if ui is None:
        ui = _status_ui(gr, watcher)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*WebhooksServer.*experimental")
        server = WebhooksServer(ui=ui, webhook_secret=config.secret)

    async def hf_fviz_webhook(request: Request) -> JSONResponse:
        # WebhooksServer has checked X-Webhook-Secret (401 missing, 403 wrong) before we get here.
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"status": "error", "reason": "body is not JSON"}, status_code=400)
        if not isinstance(payload, dict) or not _valid_payload(payload):
            return JSONResponse({"status": "error", "reason": "not a hub webhook payload (v3)"}, status_code=422)
        decision = watcher.submit(payload)
        return JSONResponse(decision.to_json(), status_code=202 if decision.status == "queued" else 200)

    server.add_webhook(config.path)(hf_fviz_webhook)
    return WebhookApp(server, ui, watcher)


def _status_ui(gr: Any, watcher: Watcher) -> Any:
    """A small landing page: what is watched, with which settings, and the latest jobs."""
    c = watcher.config
    watched = ", ".join(c.repos) or "no fixed list"
    tags = ", ".join(c.tags) or "none"

    def recent() -> list[list[Any]]:
        return [[r.commit.repo_id, r.commit.sha[:12], r.status, r.url or r.detail, r.seconds] for r in reversed(watcher.results[-50:])]

    with gr.Blocks(title="hf-fviz watch") as ui:
        gr.Markdown(
            f"# hf-fviz watch\n\nPOST hub webhooks to `/webhooks/{c.path}` (with the secret). A new commit on `main` of a "
            f"watched model repo (repos: {watched}; tags: {tags}) gets a pull request with feature visualizations "
            f"({c.settings.units} units, {c.settings.method}, {c.settings.steps} steps, {c.settings.size} px)."
        )
        table = gr.Dataframe(headers=["repo", "sha", "status", "result", "seconds"], value=recent, interactive=False)
        gr.Button("Refresh").click(recent, outputs=table, api_visibility="private")
    return ui


def _valid_payload(payload: dict[str, Any]) -> bool:
    """Check the payload against huggingface_hub's `WebhookPayload` model (the hub's v3 format)."""
    from huggingface_hub import WebhookPayload
    from pydantic import ValidationError

    try:
        WebhookPayload.model_validate(payload)
    except ValidationError:
        return False
    return True


def launch_with_webhooks(demo: Any, config: WatchConfig | None = None, **launch_kwargs: Any) -> Watcher | None:
    """Launch a Gradio app with the auto-attach webhook; a drop-in for `demo.launch(**kwargs)`.

    Without a secret (WEBHOOK_SECRET unset) the app launches as usual and no webhook is served.
    """
    try:
        config = config or WatchConfig.from_env()
    except InvalidSettings as err:
        logger.warning("hf-fviz watch: webhook disabled: %s", err)
        demo.launch(**launch_kwargs)
        return None
    app = make_webhooks_server(ui=demo, config=config)
    app.launch(**launch_kwargs)
    return app.watcher


__all__ = [
    "AutoSettings",
    "WatchConfig",
    "WebhookApp",
    "Watcher",
    "is_model_file",
    "launch_with_webhooks",
    "make_webhooks_server",
    "read_commit",
]
