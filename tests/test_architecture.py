"""The house rules of docs/ARCHITECTURE.md, checked on the source: imports follow the flow
hub -> engine -> output -> faces, and no module grows past 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_fviz"
SHARED = {"hf_fviz.errors", "hf_fviz.settings", "hf_fviz.results"}
# What each layer may import of ours besides itself and the shared vocabulary.
ALLOWED = {
    "shared": set(),
    "hub": set(),
    "engine": {"hf_fviz.hub.vision_model"},
    "output": set(),
}


def layer_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("hub", "engine", "output"):
        return parts[1]
    return "faces"  # api, cli, space, integrations, bench, zoo: free to import any layer


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool) -> set[str]:
    """Every `hf_fviz` module a source imports, at any depth (function-level and TYPE_CHECKING
    imports count too), relative imports resolved."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hf_fviz")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hf_fviz":
                continue
            modules = {f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")}
            found.update(modules)  # `from .. import render` imports the module hf_fviz.render
            names = {a.name for a in node.names} - {m.rsplit(".", 1)[1] for m in modules}
            if names and not (target == "hf_fviz" and names == {"__version__"}):  # the version string is not a layer
                found.add(target)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def violations(module: str, imported: set[str]) -> list[str]:
    layer = layer_of(module)
    if layer == "faces":
        return []
    bad = []
    for target in sorted(imported):
        if target == "hf_fviz" and layer != "shared":
            bad.append(f"{module} imports the package root (it pulls in every layer)")
            continue
        other = layer_of(target)
        if target in SHARED or other == layer and layer != "shared":
            continue
        if layer == "shared" and target == "hf_fviz.errors":
            continue
        if target in ALLOWED[layer]:
            continue
        bad.append(f"{module} ({layer}) imports {target} ({other})")
    return bad


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_checker_flags_an_import_against_the_flow():
    src = "from ..engine import optimize\nfrom .. import errors\ndef f():\n    from ..hub import load_model\n"
    found = imports_of(src, "hf_fviz.output.render", is_package=False)
    assert found == {"hf_fviz.engine.optimize", "hf_fviz.errors", "hf_fviz.hub"}
    assert violations("hf_fviz.output.render", found) == [
        "hf_fviz.output.render (output) imports hf_fviz.engine.optimize (engine)",
        "hf_fviz.output.render (output) imports hf_fviz.hub (hub)",
    ]
    assert imports_of("from .. import __version__\n", "hf_fviz.output.manifest", is_package=False) == set()
    assert violations("hf_fviz.engine.run", {"hf_fviz.hub.vision_model", "hf_fviz.settings"}) == []
    assert violations("hf_fviz.engine.run", {"hf_fviz.hub.resolve"}) == ["hf_fviz.engine.run (engine) imports hf_fviz.hub.resolve (hub)"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_flow(path: Path):
    module = module_name(path)
    found = imports_of(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py")
    assert violations(module, found) == []


def test_no_module_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in SOURCES if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


def test_every_module_imports():
    """A moved module leaves no import behind (function-level imports run only when called)."""
    import importlib

    for path in SOURCES:
        if path.name != "__main__.py":
            importlib.import_module(module_name(path))
    missing = []
    for path in SOURCES:
        for target in imports_of(path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"):
            try:
                importlib.import_module(target)
            except ModuleNotFoundError as err:
                missing.append(f"{module_name(path)} imports {target}: {err}")
    assert missing == []
