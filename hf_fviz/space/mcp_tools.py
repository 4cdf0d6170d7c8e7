"""Tools for agents: with `gradio[mcp]` installed the Space is an MCP server (`launch(mcp_server=True)`),
and each endpoint added here is a tool whose description and argument docs are the handler's
docstring and type hints. They run on the same model store, caps and queue as the page.

    list_layers(model_id)                                   -> JSON text: layers, units, classes
    visualize_units(model_id, layer, units, method, steps, size) -> grid image + text summary + zip
    read_card_visualizations(model_id)                      -> the card's feature-visualization section
"""

import json

import gradio as gr

from hf_fviz.hub.size import is_hub_id
from hf_fviz.output.card_read import read_card, read_section

from .models import ModelStore
from .run_request import make_request
from .runs import run_blocking
from .settings import Caps, friendly, message

MAX_CLASSES_LISTED = 1000


def add_tools(store: ModelStore, caps: Caps) -> None:
    """Add the agent tools (hidden components, public named endpoints) to the Blocks being built."""

    @friendly
    def list_layers(model_id: str) -> str:
        """List the layers of a Hugging Face vision model that can be visualized, with their unit counts.

        Call this first: visualize_units needs a layer name from this list and unit indices below its
        unit count (or, for the layer "logits", class names from "classes").

        Args:
            model_id: The model, as a Hugging Face hub ID "org/name" (optionally "org/name@revision"), e.g. "timm/resnet50.a1_in1k" or "google/vit-base-patch16-224"; or "builtin:mobilenetv2" / "builtin:efficientnet-lite0" (ImageNet CNNs that need no download). timm and transformers image models are supported; models above this server's parameter cap are refused.

        Returns:
            JSON text: {"model", "library", "family", "input_size", "default_layer", "layers": [{"name", "kind" ("conv", "tokens" or "logits"), "units"}], "classes": [class names by index, empty for backbones without a head]}.
        """
        model = store.get(model_id)
        return json.dumps({
            "model": model.id, "library": model.library, "family": model.family, "input_size": list(model.input_size),
            "default_layer": model.default_layer,
            "layers": [{"name": layer.name, "kind": layer.kind, "units": layer.units} for layer in model.layers()],
            "classes": list(model.labels or [])[:MAX_CLASSES_LISTED],
        })

    @friendly
    def visualize_units(model_id: str, layer: str, units: str, method: str = "maco", steps: float = 0,
                        size: float = 0) -> tuple[str, str, str]:
        """Show what units or classes of a vision model's layer respond to: optimizes one image per unit (feature visualization) and returns them as a captioned grid.

        Takes seconds to minutes on a CPU (about steps x units x model size): start with few steps.

        Args:
            model_id: The model, as in list_layers: "org/name", "org/name@revision" or "builtin:mobilenetv2".
            layer: A layer name from list_layers, e.g. "logits" for the classes, or "layer3.1" / "blocks.6" for inner units.
            units: Which units, comma-separated: unit indices ("0, 5, 12" or a range "0-3") for an inner layer; for "logits", class names or indices ("tabby cat, goldfish" or "285"). At most 8 per call on a CPU server.
            method: "maco" (default, natural-looking images), "fourier" or "pixel".
            steps: Optimization steps, 0 for the server default (48 on CPU; at most 256 on CPU).
            size: Image side in pixels, 0 for the server default (224 on CPU; 64 to 512 on CPU).

        Returns:
            The grid image (each unit's image with its label and final objective); a text summary, one line per unit: label, unit index, final objective value (the unit's mean activation on the image; higher = stronger response), image URL; and the zip with manifest.json and the PNGs.
        """
        req = make_request(caps, model_id, layer, units, method, steps or caps.default_steps, size or caps.default_size)
        run = run_blocking(store, req)
        lines = [f"{req.model_id}, layer {req.layer}, {req.method}, {req.steps} steps at {req.size} px, "
                 f"{run.seconds:.1f} s on {run.device}" + (" (stopped at the time limit)" if run.stopped_early else "")]
        for item in run.items:
            objective = item.get("objective")
            value = f"{objective:.3f}" if isinstance(objective, (int, float)) else "n/a"
            lines.append(f"- {item.get('label') or req.layer} (unit {item.get('unit')}): final objective {value}; "
                         f"image {item['image']}")
        return str(run.folder / "grid.png"), "\n".join(lines), str(run.zip_path)

    @friendly
    def read_card_visualizations(model_id: str) -> str:
        """Read the feature-visualization section of a model's card (README.md on the hub), if its authors published one with hf-fviz.

        Args:
            model_id: Hugging Face hub model ID "org/name" (optionally "@revision"). builtin: models have no card.

        Returns:
            The section's markdown (images are linked as feature_visualizations/... files of the model repo, resolvable at https://huggingface.co/ORG/NAME/resolve/main/PATH), or a one-line note that the card has no such section.
        """
        model_id = (model_id or "").strip()
        if not model_id or not is_hub_id(model_id):
            raise gr.Error("Give a hub model ID (org/name): only hub models have a card.", title="No card")
        try:
            text = read_card(model_id, model_id.partition("@")[2] or None)[0]
        except Exception as err:  # not on the hub, not cached offline, unreadable: one line
            raise gr.Error(f"no card for {model_id}: {message(err)}", title="No card") from None
        section = read_section(text)
        return section.strip() if section else f"The card of {model_id} has no hf-fviz feature-visualization section."

    with gr.Row(visible=False):
        model_in, layer_in, units_in, method_in = gr.Textbox(), gr.Textbox(), gr.Textbox(), gr.Textbox(value="maco")
        steps_in, size_in = gr.Number(value=0), gr.Number(value=0)
        layers_out, summary_out, section_out = gr.Textbox(), gr.Textbox(), gr.Textbox()
        grid_out = gr.Image(type="filepath", format="png")
        zip_out = gr.File()
        buttons = [gr.Button() for _ in range(3)]
    # visualize_units runs outside the queue: Gradio 6.31's MCP server flattens the outputs of a
    # queued multi-output tool into one text blob (no image). The store's run slots still allow
    # only `caps.concurrency` optimizations at once, page and agents together.
    button_layers, button_vis, button_card = buttons
    button_layers.click(list_layers, [model_in], [layers_out], api_name="list_layers", api_visibility="public",
                        concurrency_id="load", concurrency_limit=2)
    button_vis.click(visualize_units, [model_in, layer_in, units_in, method_in, steps_in, size_in],
                     [grid_out, summary_out, zip_out], api_name="visualize_units", api_visibility="public", queue=False)
    button_card.click(read_card_visualizations, [model_in], [section_out], api_name="read_card_visualizations",
                      api_visibility="public", concurrency_id="card", concurrency_limit=4)
