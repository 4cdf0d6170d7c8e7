"""Channels of a Vision Transformer's MLP layer (transformers or timm), averaged over patch tokens.

    python examples/vit_mlp_channels.py google/vit-base-patch16-224 --channels 0,1,2,3
    python examples/vit_mlp_channels.py timm/vit_small_patch16_224.augreg_in21k --layer blocks.6.mlp.act

Without --layer it picks the MLP hidden layer (post-GELU, Ghiasi et al.'s choice) in the middle of
the network. The CLS and other prefix tokens are left out of the channel mean.
"""

import argparse

import hf_fviz
from hf_fviz import render

parser = argparse.ArgumentParser()
parser.add_argument("model", nargs="?", default="google/vit-base-patch16-224")
parser.add_argument("--layer", default=None)
parser.add_argument("--channels", default="0,1,2,3")
parser.add_argument("--steps", type=int, default=160)
parser.add_argument("--size", type=int, default=384)
parser.add_argument("--out", default="fviz-vit-mlp")
args = parser.parse_args()

model = hf_fviz.load_model(args.model)
layer = args.layer
if layer is None:
    mlp = [l.name for l in model.layers() if l.kind == "tokens" and any(k in l.name for k in ("intermediate", "mlp.act", "mlp.fc1"))]
    if not mlp:
        raise SystemExit(f"no MLP layer found in {args.model}; pass --layer (see `hf-fviz layers {args.model}`)")
    layer = mlp[len(mlp) // 2]
units = [int(c) for c in args.channels.split(",")]
vis = hf_fviz.visualize(model, layer=layer, units=units, steps=args.steps, size=args.size)
print(f"{layer}: objectives", [round(v.objective, 3) for v in vis])
print("wrote", render.save(vis, args.out, model=model))
