"""`hf-fviz layers` (a model's layer catalogue), `publish` (an output folder onto a model card),
`watch` (the hub webhook server) and `space` (export or push the Gradio Space)."""

from __future__ import annotations

import argparse
import json

from ..integrations.webhook import AutoSettings
from ..settings import CPU_JOB
from .common import Handler, add_model_options, add_run_options, load, settings


def _add_token_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--token", default=None, help=f"{what} (default: HF_TOKEN or the one saved by `hf auth login`)")


def _layers_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("layers", help="list a model's layers with their kind, unit count and shape")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, kind, units, shape}")
    return _layers


def _layers(args: argparse.Namespace) -> int:
    model = load(args)
    layers = model.layers()
    if args.json:
        print(json.dumps([layer.to_dict() for layer in layers], indent=1))
        return 0
    print(f"{model.id}  ({model.library}, {model.family}, input {model.input_size[0]}x{model.input_size[1]})")
    width = max(len(layer.name) for layer in layers)
    for layer in layers:
        extra = ""
        if layer.kind == "tokens":
            extra = f"  prefix={layer.prefix_tokens} grid={layer.grid}"
        print(f"  {layer.name:<{width}}  {layer.kind:<6}  units={layer.units:<5}  shape={tuple(layer.shape)}{extra}")
    return 0


def _publish_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("publish", help="put an output folder's images on the model card (local clone, or a pull request on the hub)")
    p.add_argument("model", help="hub repo id of the model whose card gets the section (org/name)")
    p.add_argument("--from", dest="from_dir", required=True, metavar="DIR", help="output folder of visualize, dual, facets or atlas")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local-dir", metavar="REPO_DIR", help="write into this local clone of the model repo")
    where.add_argument("--pr", action="store_true", help="open one pull request on the hub (never a push to main)")
    _add_token_option(p, "hub token")
    p.add_argument("--absolute-urls", action="store_true", help="link images by absolute resolve/<REV> URLs instead of relative paths")
    p.add_argument("--url-revision", default="main", metavar="REV", help="revision used in absolute image URLs (default: main)")
    p.add_argument("--max-units", type=int, default=32, metavar="N", help="per-unit images on the card (the grid shows all; default 32)")
    return _publish


def _publish(args: argparse.Namespace) -> int:
    from ..output.publish import AssetLimits, publish

    result = publish(
        args.model,
        args.from_dir,
        local_dir=args.local_dir,
        create_pr=True,
        token=args.token,
        absolute_urls=args.absolute_urls,
        url_revision=args.url_revision,
        limits=AssetLimits(max_units=args.max_units),
    )
    if result.url:
        print(result.url)
    else:
        print(f"wrote {len(result.files) - 1} images and README.md under {result.local_dir}")
    return 0


def _watch_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("watch", help="serve a hub webhook: new commits of watched model repos get a pull request with feature visualizations")
    p.add_argument("--secret", default=None, help="webhook secret, as set on huggingface.co/settings/webhooks (default: WEBHOOK_SECRET)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 to accept outside requests)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--repos", default=None, metavar="ORG/A,ORG/B", help="watch these model repos (comma-separated)")
    p.add_argument("--tag", action="append", default=None, metavar="TAG", help="watch repos carrying this hub tag (repeatable; default: hf-fviz)")
    p.add_argument("--state-dir", default=None, metavar="DIR", help="where handled commits are remembered (default: HF_FVIZ_STATE_DIR or ~/.cache/hf_fviz/watch)")
    _add_token_option(p, "hub token that opens the pull requests")
    p.add_argument("--layer", default=None, help="layer to visualize (default: logits, or the last layer of a backbone)")
    p.add_argument("--units", type=int, default=None, metavar="N",
                   help=f"visualize the first N units (classes) of the layer (default {CPU_JOB.default_units})")
    add_run_options(p, AutoSettings())
    p.add_argument("--no-caps", action="store_true", help="lift the CPU limits on units/steps/size/crops (for a GPU host)")
    return _watch


def _watch(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..integrations import WatchConfig, make_webhooks_server

    config = WatchConfig.from_env(
        secret=args.secret or os.environ.get("WEBHOOK_SECRET") or None,
        **({"repos": tuple(args.repos.split(","))} if args.repos is not None else {}),
        **({"tags": tuple(args.tag)} if args.tag else {}),
        **({"state_dir": Path(args.state_dir)} if args.state_dir else {}),
        **({"token": args.token} if args.token else {}),
        settings=settings(args, AutoSettings, check=False, layer=args.layer, units=args.units),  # WatchConfig checks
        profile=None if args.no_caps else CPU_JOB,
    )
    app = make_webhooks_server(config=config)
    print(f"hf-fviz watch: POST hub webhooks to http://{args.host}:{args.port}{app.path}; handled commits in {config.state_dir}")
    app.launch(server_name=args.host, server_port=args.port, quiet=True, ssr_mode=False)
    return 0


def _space_parser(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("space", help="a deployable Gradio Space: export it to a folder, or push it to the hub")
    what = p.add_subparsers(dest="space_command", required=True, metavar="{export,push}")
    e = what.add_parser("export", help="write a self-contained Space folder (app.py, README.md, requirements.txt, wheels/)")
    e.add_argument("dir", metavar="DIR")
    e.add_argument("--source", default=None, metavar="REQ",
                   help="install hf_fviz from this requirement instead of a wheel of this checkout "
                        "(e.g. 'hf_fviz @ git+https://github.com/ORG/hf_fviz@v0.1.0')")
    e.add_argument("--force", action="store_true", help="overwrite an earlier export in DIR")
    u = what.add_parser("push", help="create or update the Space USER/SPACE on the hub in one commit")
    u.add_argument("space_id", metavar="USER/SPACE")
    u.add_argument("--from", dest="from_dir", default=None, metavar="DIR", help="an exported folder (default: export afresh)")
    u.add_argument("--private", action="store_true", help="create the Space private")
    _add_token_option(u, "hub token")
    for q in (e, u):
        q.add_argument("--hardware", default="cpu-basic", help="suggested_hardware in the front matter (default cpu-basic)")
    return _space


def _space(args: argparse.Namespace) -> int:
    from ..space import deploy

    if args.space_command == "export":
        path = deploy.export(args.dir, source=args.source, hardware=args.hardware, force=args.force)
        print(f"wrote the Space folder {path}: start it with `cd {path} && pip install -r requirements.txt && python app.py`")
        return 0
    url = deploy.push(args.space_id, folder=args.from_dir, token=args.token, private=args.private or None,
                      hardware=args.hardware)
    print(url)
    return 0
