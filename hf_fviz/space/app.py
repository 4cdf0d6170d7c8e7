"""The hf_fviz Space: see what a unit of any hub vision model responds to, by the model's ID.

A face over the public API only (`hf_fviz.load_model`, `hf_fviz.visualize`, `hf_fviz.render`,
`hf_fviz.publish`): it parses input, calls the API and shows the output. Caps on steps, size,
units and model size keep one visitor from starving the others on a free CPU Space; every
`hf_fviz.errors.FvizError` is shown as a one-line message in the page, never a traceback.

API (contract): `/layers (model_id)` and `/visualize (model_id, layer, units, method, steps, size)`;
with `gradio[mcp]` installed the same server is an MCP server (tools in `mcp_tools`).

    python space/app.py          # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured

This module is the Space's one entry point; the parts live in small modules next to it:
settings (caps), models, cardview, run_request, runs, layout, signin, mcp_tools.
"""

import importlib.util
import logging
import os
from typing import Any

import gradio as gr

import hf_fviz  # noqa: F401  (tests patch hf_fviz.visualize through this name)

from hf_fviz.hub.size import hub_parameter_count, is_hub_id  # noqa: F401

from .cardview import _asset_path, card_images  # noqa: F401
from .layout import CSS, build_demo
from .models import ModelStore  # noqa: F401
from .run_request import RunRequest, available_methods, make_request, parse_units  # noqa: F401
from .runs import RunResult, Tick, finish_run, optimize_stream, run_blocking  # noqa: F401
from .settings import Caps, friendly, workdir  # noqa: F401
from .signin import MOCK_OAUTH_TOKEN, oauth_available, publish_to_card  # noqa: F401

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="pink")


def mcp_available() -> bool:
    """`gradio[mcp]` installed: the Space is also an MCP server (GRADIO_MCP_SERVER=False turns it off)."""
    if os.environ.get("GRADIO_MCP_SERVER", "").strip().lower() in ("0", "false", "no"):
        return False
    return importlib.util.find_spec("mcp") is not None


def launch(demo: gr.Blocks | None = None, **kwargs: Any) -> Any:
    """Queue (with the caps' limits) and launch with the Space's theme and CSS, as an MCP server
    too when `gradio[mcp]` is installed."""
    demo = demo or build_demo()
    caps: Caps = getattr(demo, "hf_fviz_caps", None) or Caps.from_env()
    demo.queue(max_size=caps.queue_size, default_concurrency_limit=caps.concurrency)
    kwargs.setdefault("server_name", os.environ.get("GRADIO_SERVER_NAME") or None)
    port = os.environ.get("GRADIO_SERVER_PORT")
    kwargs.setdefault("server_port", int(port) if port else None)
    kwargs.setdefault("theme", THEME)
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("footer_links", ["api", "gradio"])
    kwargs.setdefault("mcp_server", mcp_available())
    if os.environ.get("WEBHOOK_SECRET"):
        # Auto-attach: also serve POST /webhooks/hf-fviz (hf_fviz.integrations; needs HF_TOKEN to open PRs).
        from hf_fviz.integrations import launch_with_webhooks

        kwargs.setdefault("share", False)  # WebhooksServer would open a share link when run locally
        return launch_with_webhooks(demo, **kwargs)
    return demo.launch(**kwargs)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    launch()
