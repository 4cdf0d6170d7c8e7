"""The Space's page: layout, handlers and the event wiring (API names, visibility, queue limits)."""

import html
import math
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from hf_fviz.hub.size import is_hub_id, parameter_count

from .cardview import card_images
from .exemplar_view import DEFAULT_TOP, MAX_TOP, MIN_TOP, SOURCE_HINT, add_exemplars, exemplar_request, exemplar_view, hide_exemplars
from .mcp_tools import add_tools
from .models import ModelStore
from .run_request import IMAGE_METHODS, METHOD_LABELS, available_methods, make_request
from .runs import Tick, finish_run, optimize_stream, run_blocking
from .settings import DEFAULT_MODEL, EXAMPLES, LOGITS, PREFERRED_CLASSES, Caps, friendly
from .signin import LOCAL_PUBLISH_NOTE, oauth_available, publish_to_card

# ---------------------------------------------------------------------------- page text
def model_summary(model: Any) -> str:
    params = parameter_count(model)
    h, w = model.input_size
    parts = [f"**{html.escape(model.id)}**", model.library, model.family, f"{h}×{w} input", f"{params / 1e6:.1f} M parameters",
             f"{len(model.layers())} layers"]
    if model.labels:
        parts.append(f"{len(model.labels)} classes")
    return " · ".join(parts)


def class_choices(model: Any) -> list[tuple[str, str]]:
    return [(f"{label} ({i})", str(i)) for i, label in enumerate(model.labels or [])]


def default_class(model: Any) -> list[str]:
    labels = [label.lower() for label in (model.labels or [])]
    for name in PREFERRED_CLASSES:
        if name in labels:
            return [str(labels.index(name))]
    return ["0"] if labels else []


def layer_choices(model: Any) -> list[tuple[str, str]]:
    def label(layer: Any) -> str:
        if layer.name == LOGITS:
            return f"logits  ·  {layer.units} classes"
        return f"{layer.name}  ·  {layer.kind}, {layer.units} units"

    return [(label(layer), layer.name) for layer in model.layers()]


def _units_hint(units: int) -> str:
    return f"Unit indices 0..{units - 1}, e.g. 0, 5, 12 or 0-3"


HEADER = """
<div class="fviz-header">
<h1>hf-fviz <span class="fviz-sub">feature visualization for hub vision models</span></h1>
<p>What does a unit of a vision model respond to? Give any Hugging Face image model by its ID
(timm or transformers), pick a layer and units, and optimize images that excite them, with
<a href="https://arxiv.org/abs/2306.06805" target="_blank">MACO</a> (phase-only Fourier optimization under a
natural-image spectrum). The faint regions of the transparency view mattered least to the unit.</p>
</div>
"""

CSS = """
.fviz-header h1 { margin-bottom: 0.2rem; }
.fviz-header .fviz-sub { font-size: 1rem; font-weight: 400; color: var(--body-text-color-subdued); margin-left: 0.4rem; }
.fviz-header p { margin-top: 0; color: var(--body-text-color-subdued); max-width: 62rem; }
#fviz-status { min-height: 4.5rem; }
#fviz-gallery .caption-label { white-space: normal; }
footer { margin-top: 0.5rem; }
"""


# ---------------------------------------------------------------------------- the page
def build_demo(
    caps: Caps | None = None,
    *,
    store: ModelStore | None = None,
    default_model: str = DEFAULT_MODEL,
    autoload: bool = True,
    oauth: bool | None = None,
    mcp_tools: bool = True,
) -> gr.Blocks:
    """The Space's page. Tests import it, launch it on a free port and drive it.

    The page opens with `default_model` in the box, loaded at once when `autoload`; a link
    `?model=org/name` (the model cards' "Try this model" link) loads that model instead.
    `oauth` (default: `oauth_available()`) adds the Hugging Face login and the publish button;
    `mcp_tools` the endpoints meant for agents (`mcp_tools.add_tools`)."""
    oauth = oauth_available() if oauth is None else oauth
    caps = caps or Caps.from_env()
    store = store or ModelStore(caps)
    methods = available_methods()

    def describe(model: Any) -> dict[str, Any]:
        return {"id": model.id, "units": {layer.name: layer.units for layer in model.layers()}, "has_head": model.has_head}

    # ------------------------------------------------------------------ handlers
    @friendly
    def load(model_id: str) -> tuple:
        """Load a model into the page (the /layers endpoint): fills the page's layer and class pickers.

        Agents: prefer list_layers, which returns the same information as plain JSON.

        Args:
            model_id: Hugging Face hub model ID "org/name" (or "builtin:mobilenetv2").
        """
        model = store.get(model_id)
        layer = model.default_layer
        info = describe(model)
        card = card_images(model.id if is_hub_id(model_id.strip()) else model_id.strip(), revision=model.revision)
        if card:
            status = (f"Shown from the model card: {len(card)} hf-fviz images published earlier. "
                      "Pick units and press **Visualize** to make your own.")
        else:
            status = "Model loaded. Pick units and press **Visualize**."
        is_logits = layer == LOGITS
        return (
            info,
            gr.update(choices=layer_choices(model), value=layer, interactive=True),
            gr.update(choices=class_choices(model), value=default_class(model) if is_logits else [], visible=is_logits),
            gr.update(visible=not is_logits, value="" if is_logits else "0-3", info=_units_hint(info["units"].get(layer, 1))),
            model_summary(model),
            card or None,
            status,
        )

    def pick_layer(info: dict | None, layer: str | None) -> tuple:
        if not info or not layer:
            return gr.skip(), gr.skip()
        units = info["units"].get(layer)
        if layer == LOGITS and info.get("has_head"):
            return gr.update(visible=True), gr.update(visible=False)
        return gr.update(visible=False), gr.update(visible=True, info=_units_hint(units or 1))

    def pick_method(method: str) -> tuple:
        needs_images = method in IMAGE_METHODS
        return gr.update(visible=needs_images), gr.update(visible=needs_images)

    @friendly
    def run(
        info: dict | None,
        layer: str | None,
        classes: list[str] | None,
        units: str | None,
        method: str,
        steps: float,
        size: float,
        seed: float,
        crops: float,
        images: list[Any] | None,
        k: float,
        ex_source: str | None = None,
        ex_top: float = DEFAULT_TOP,
        progress: gr.Progress = gr.Progress(),
    ) -> Iterator[tuple]:
        if not info:
            raise gr.Error("Load a model first.", title="No model")
        picked = classes if layer == LOGITS else units
        req = make_request(caps, info["id"], layer, picked, method, steps, size, crops=crops, seed=seed, images=images, k=k)
        ask = exemplar_request(ex_source, ex_top)
        progress(0, desc="loading the model")
        yield gr.skip(), "Starting…", gr.update(visible=False), None, _curve([])
        start = time.perf_counter()
        every = max(1, req.steps // max(1, caps.previews))
        curve: list[dict[str, float]] = []
        last_yield = 0.0
        for event in optimize_stream(store, req, every):
            if isinstance(event, Tick):
                progress((event.step, event.total), desc="optimizing", unit="steps")
                if math.isfinite(event.objective):
                    curve.append({"step": event.step, "objective": event.objective})
                now = time.perf_counter()
                if event.previews or now - last_yield > 1.0:
                    last_yield = now
                    status = f"Step {event.step} / {event.total} · objective {event.objective:.2f} · {now - start:.0f} s"
                    yield (event.previews if event.previews else gr.skip()), status, gr.skip(), gr.skip(), _curve(curve)
                continue
            if ask:
                yield gr.skip(), f"Finding natural exemplars in {ask.source}…", gr.skip(), gr.skip(), gr.skip()
                add_exemplars(store.get(req.model_id), event, ask, progress)
            progress(1.0, desc="writing images")
            result = finish_run(store, req, event, time.perf_counter() - start)
            n = len(result.items)
            what = ("class" if n == 1 else "classes") if req.layer == LOGITS else ("unit" if n == 1 else "units")
            status = (f"Done in {result.seconds:.1f} s on {result.device}: {n} {what} of `{req.layer}` with "
                      f"{_method_label(req.method)}, {req.steps} steps at {req.size} px "
                      "(caption: class or unit · final objective). "
                      + (f"Stopped at this Space's {caps.max_seconds} s limit: the images are as far as they got. "
                         if result.stopped_early else "")
                      + ("Natural exemplars and the sanity check are below. " if ask else "")
                      + ("Download the zip, or sign in to publish them to the model card." if oauth else "Download the zip below."))
            yield (
                result.gallery,
                status,
                gr.update(value=str(result.zip_path), visible=True),
                {"model_id": req.model_id, "folder": str(result.folder)},
                _curve(curve),
            )

    @friendly
    def api_visualize(model_id: str, layer: str, units: str, method: str, steps: float, size: float) -> list[tuple[str, str]]:
        """Visualize units of a layer (the /visualize endpoint): a gallery of (image, caption), each
        image followed by its transparency view. Agents: prefer visualize_units (grid image + summary).

        Args:
            model_id: Hugging Face hub model ID "org/name" (or "builtin:mobilenetv2").
            layer: layer name (see /layers), "logits" for classes.
            units: comma-separated unit indices or ranges ("0-3"), or class names/indices for "logits".
            method: "maco", "fourier" or "pixel".
            steps: optimization steps (capped by the server).
            size: image side in pixels (capped by the server).
        """
        req = make_request(caps, model_id, layer, units, method, steps, size)
        return run_blocking(store, req).gallery

    @friendly
    def publish(last: dict | None, oauth_token: gr.OAuthToken | None) -> str:
        return publish_to_card(last, oauth_token)

    def logged_in(profile: gr.OAuthProfile | None) -> Any:
        return gr.update(visible=profile is not None)

    def from_query(request: gr.Request) -> tuple:
        asked = (request.query_params.get("model") or "").strip() if request is not None else ""
        return (asked or gr.skip()), bool(asked)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="hf-fviz: feature visualization for hub vision models", delete_cache=(3600, 3 * 3600)) as demo:
        model_info = gr.State(None)
        last_run = gr.State(None)
        gr.HTML(HEADER)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                with gr.Group():
                    with gr.Row(equal_height=True):
                        model_box = gr.Textbox(
                            label="Model ID", value=default_model, placeholder="org/name, e.g. timm/resnet50.a1_in1k",
                            scale=4, max_lines=1, elem_id="fviz-model",
                        )
                        load_btn = gr.Button("Load", variant="secondary", scale=1, min_width=80, elem_id="fviz-load")
                gr.Examples([[e] for e in EXAMPLES], inputs=[model_box], label="Examples (builtin: models work offline)",
                            examples_per_page=len(EXAMPLES))
                summary = gr.Markdown("", elem_id="fviz-summary")
                layer_dd = gr.Dropdown(label="Layer", choices=[], interactive=True, elem_id="fviz-layer",
                                       info="`logits` = the classes; earlier layers show simpler features")
                classes_dd = gr.Dropdown(label="Classes", choices=[], multiselect=True, filterable=True, interactive=True,
                                         max_choices=caps.max_units, elem_id="fviz-classes",
                                         info=f"Type to search; up to {caps.max_units} per run")
                units_box = gr.Textbox(label="Units", visible=False, max_lines=1, elem_id="fviz-units")
                method_radio = gr.Radio(methods, value="maco", label="Method", elem_id="fviz-method")
                images_in = gr.File(label="Natural images to cluster (none: hf_fviz's bundled samples)",
                                    file_count="multiple", file_types=["image"], type="filepath", visible=False)
                k_slider = gr.Slider(1, 8, value=3, step=1, label="Facets / clusters (one image each)", visible=False)
                with gr.Row():
                    steps_sl = gr.Slider(8, caps.max_steps, value=caps.default_steps, step=8, label="Steps",
                                         info=f"max {caps.max_steps} on this Space")
                    size_sl = gr.Slider(caps.min_size, caps.max_size, value=caps.default_size, step=32, label="Size (px)",
                                        info=f"max {caps.max_size} on this Space")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        seed_nb = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        crops_sl = gr.Slider(1, caps.max_crops, value=caps.crops, step=1, label="Crops per step")
                with gr.Accordion("Natural exemplars and sanity check", open=False):
                    ex_source = gr.Textbox(label="Image source", placeholder="samples or org/name", max_lines=1,
                                           info=SOURCE_HINT, elem_id="fviz-ex-source")
                    ex_top = gr.Slider(MIN_TOP, MAX_TOP, value=DEFAULT_TOP, step=1, label="Exemplars per unit")
                with gr.Row():
                    run_btn = gr.Button("Visualize", variant="primary", scale=3, elem_id="fviz-run")
                    stop_btn = gr.Button("Stop", variant="stop", scale=1, min_width=80)
            with gr.Column(scale=7, min_width=400):
                status_md = gr.Markdown("Load a model to begin.", elem_id="fviz-status")
                gallery = gr.Gallery(label="Visualizations (each with its transparency view)", columns=4, height="auto",
                                     object_fit="contain", format="png", preview=False, elem_id="fviz-gallery",
                                     buttons=["download", "fullscreen"])
                curve_plot = gr.LinePlot(x="step", y="objective", x_title="step", y_title="objective (mean)", height=160,
                                         label="Objective while optimizing", show_label=True, elem_id="fviz-curve")
                ex_gallery = gr.Gallery(label="Natural exemplars: each visualization, then the images that excite its unit most",
                                        visible=False, height="auto", object_fit="contain", preview=False,
                                        elem_id="fviz-exemplars")
                sanity_md = gr.Markdown("", visible=False, elem_id="fviz-sanity")
                with gr.Row(equal_height=True):
                    download_btn = gr.DownloadButton("Download manifest + PNGs (zip)", visible=False, elem_id="fviz-download")
                if oauth:
                    with gr.Group():
                        with gr.Row(equal_height=True):
                            gr.LoginButton(scale=1)
                            publish_btn = gr.Button("Publish to model card (opens a pull request)", visible=False,
                                                    scale=2, elem_id="fviz-publish")
                        publish_md = gr.Markdown("")
                else:
                    gr.Markdown(LOCAL_PUBLISH_NOTE, elem_id="fviz-publish-note")

        # hidden twins of the inputs for the scripted API (units as a comma-separated string)
        with gr.Row(visible=False):
            api_model, api_layer, api_units, api_method = (gr.Textbox(), gr.Textbox(), gr.Textbox(), gr.Textbox())
            api_steps, api_size = gr.Number(), gr.Number()
            api_gallery = gr.Gallery(format="png")
            api_btn = gr.Button()
            autoload = gr.State(False)

        # Every event names its endpoint and says who may call it; queued ones share a limit
        # per kind of work (loading, optimizing, publishing) so that one visitor cannot starve the rest.
        load_outputs = [model_info, layer_dd, classes_dd, units_box, summary, gallery, status_md]
        gr.on([load_btn.click, model_box.submit], load, inputs=[model_box], outputs=load_outputs,
              api_name="layers", api_visibility="public", concurrency_id="load", concurrency_limit=2).success(
            lambda: (_curve([]), gr.update(visible=False)), None, [curve_plot, download_btn],  # the last run was another model's
            api_name="clear_run", api_visibility="private", queue=False,
        )
        layer_dd.change(pick_layer, [model_info, layer_dd], [classes_dd, units_box], api_name="pick_layer",
                        api_visibility="private", queue=False)
        method_radio.change(pick_method, method_radio, [images_in, k_slider], api_name="pick_method",
                            api_visibility="private", queue=False)
        run_event = run_btn.click(
            run,
            inputs=[model_info, layer_dd, classes_dd, units_box, method_radio, steps_sl, size_sl, seed_nb, crops_sl, images_in, k_slider,
                    ex_source, ex_top],
            outputs=[gallery, status_md, download_btn, last_run, curve_plot],
            api_name="run", api_visibility="private", concurrency_id="optimize", concurrency_limit=caps.concurrency,
            show_progress_on=[status_md],  # the bar sits on the status line; the gallery and curve stay visible
        )
        run_event.success(exemplar_view, [last_run], [ex_gallery, sanity_md], api_name="exemplar_view",
                          api_visibility="private", queue=False)
        gr.on([run_btn.click, load_btn.click, model_box.submit], hide_exemplars, None, [ex_gallery, sanity_md],
              api_name="hide_exemplars", api_visibility="private", queue=False)  # no stale exemplars of the last run
        stop_btn.click(None, cancels=[run_event], api_name="stop", api_visibility="private", queue=False)
        api_btn.click(api_visualize, [api_model, api_layer, api_units, api_method, api_steps, api_size], api_gallery,
                      api_name="visualize", api_visibility="public", concurrency_id="optimize",
                      concurrency_limit=caps.concurrency)
        if oauth:
            publish_btn.click(publish, [last_run], publish_md, api_name="publish", api_visibility="private",
                              concurrency_id="publish", concurrency_limit=2)
            demo.load(logged_in, None, publish_btn, api_name="logged_in", api_visibility="private", queue=False)
        demo.load(from_query, None, [model_box, autoload], api_name="from_query", api_visibility="private",
                  queue=False).then(
            lambda flag, model_id: load(model_id) if flag or (autoload and model_id == default_model) else tuple(gr.skip() for _ in load_outputs),
            [autoload, model_box], load_outputs, api_name="autoload", api_visibility="private",
            concurrency_id="load", concurrency_limit=2,
        )
        if mcp_tools:
            add_tools(store, caps)
    demo.hf_fviz_caps = caps  # for tests and launch()
    return demo


def _method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _curve(points: list[dict[str, float]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(points or [], columns=["step", "objective"])
    return frame.astype({"step": "int64", "objective": "float64"})
