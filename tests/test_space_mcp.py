"""The Space as an MCP server (issue 16): an MCP client (the `mcp` package) connects to the Space
launched on 127.0.0.1 exactly as `launch()` does, lists the tools, and gets images back."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
from datetime import timedelta

import pytest
from PIL import Image

from tests.test_space import app, carded_repo  # noqa: F401  (fixtures)

TOOLS = {"list_layers", "visualize_units", "read_card_visualizations"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mcp_url(app, tmp_path_factory):  # noqa: F811
    assert app.mcp_available()  # gradio[mcp] is in the dev extra: launch() turns the MCP server on
    os.environ["HF_FVIZ_SPACE_DIR"] = str(tmp_path_factory.mktemp("space-mcp"))
    caps = app.Caps(default_steps=4, max_steps=16, default_size=64, max_size=128, min_size=32, crops=1, max_crops=2,
                    max_units=4, queue_size=8, models_in_memory=2, previews=1)
    demo = app.build_demo(caps, autoload=False, oauth=False)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True,
                           quiet=True, ssr_mode=False)
    try:
        yield url.rstrip("/") + "/gradio_api/mcp/"
    finally:
        demo.close()


def _session(url: str, calls: list[tuple[str, dict]]):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def go():
        async with streamable_http_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = (await session.list_tools()).tools
                results = [await session.call_tool(name, args, read_timeout_seconds=timedelta(seconds=240))
                           for name, args in calls]
                return tools, results

    return asyncio.run(go())


def test_an_mcp_client_lists_the_tools_and_gets_images_back(mcp_url, carded_repo):  # noqa: F811
    tools, (layers, vis, card, plain) = _session(mcp_url, [
        ("list_layers", {"model_id": "builtin:mobilenetv2"}),
        ("visualize_units", {"model_id": "builtin:mobilenetv2", "layer": "logits", "units": "goldfish, 285",
                             "method": "maco", "steps": 4, "size": 64}),
        ("read_card_visualizations", {"model_id": "org/tiny-carded"}),
        ("read_card_visualizations", {"model_id": "org/tiny-resnet"}),
    ])
    by_name = {t.name: t for t in tools}
    assert TOOLS <= set(by_name)
    vis_tool = by_name["visualize_units"]
    assert "feature visualization" in vis_tool.description.lower()
    props = vis_tool.inputSchema["properties"]
    assert set(props) == {"model_id", "layer", "units", "method", "steps", "size"}
    assert "class names" in props["units"]["description"] and "At most 8" in props["units"]["description"]

    listed = json.loads(layers.content[0].text)
    assert listed["model"] == "builtin:mobilenetv2" and listed["layers"][-1] == {"name": "logits", "kind": "logits", "units": 1000}
    assert listed["classes"][1] == "goldfish" and len(listed["classes"]) == 1000

    assert not vis.isError, vis.content
    images = [c for c in vis.content if c.type == "image"]
    assert len(images) == 1 and images[0].mimeType == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(images[0].data))) as grid:
        assert grid.width >= 2 * 64 and grid.height >= 64  # two tiles with captions
    text = "\n".join(c.text for c in vis.content if c.type == "text")
    assert "goldfish (unit 1): final objective" in text and "(unit 285): final objective" in text
    assert ".zip" in text  # the zip with manifest and PNGs, by URL

    section = card.content[0].text
    assert "feature_visualizations/" in section and "![" in section
    assert plain.isError and "no card for org/tiny-resnet" in plain.content[0].text  # its repo has no README.md


def test_an_mcp_tool_error_is_one_line(mcp_url):
    _, (bad,) = _session(mcp_url, [("visualize_units", {"model_id": "builtin:mobilenetv2", "layer": "nope",
                                                          "units": "1", "steps": 4, "size": 64})])
    assert bad.isError
    message = " ".join(c.text for c in bad.content if c.type == "text")
    assert "unknown layer 'nope'" in message and "Traceback" not in message


def test_the_mcp_server_follows_gradio_mcp_server(app, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GRADIO_MCP_SERVER", "False")
    assert not app.mcp_available()
    monkeypatch.delenv("GRADIO_MCP_SERVER")
    assert app.mcp_available()  # gradio[mcp] installed (the dev extra)
