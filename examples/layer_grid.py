"""All (or the first N) channels of one layer as a captioned grid.

    python examples/layer_grid.py builtin:mobilenetv2 --layer blocks.4 --n 16

Units are optimized together in batches (one image per channel, all crops in one forward pass).
"""

import argparse

import hf_fviz
from hf_fviz import render

parser = argparse.ArgumentParser()
parser.add_argument("model", nargs="?", default="builtin:mobilenetv2")
parser.add_argument("--layer", default=None, help="default: a layer two thirds deep")
parser.add_argument("--n", type=int, default=16, help="first N channels")
parser.add_argument("--steps", type=int, default=128)
parser.add_argument("--size", type=int, default=256)
parser.add_argument("--out", default="layer_grid.png")
args = parser.parse_args()

model = hf_fviz.load_model(args.model)
layers = [l for l in model.layers() if l.kind != "logits"]
layer = model.layer(args.layer) if args.layer else layers[2 * len(layers) // 3]
vis = hf_fviz.visualize(model, layer=layer.name, units=list(range(min(args.n, layer.units))), steps=args.steps, size=args.size)
render.grid(vis, tile=128).save(args.out)
print(f"{layer.name}: {len(vis)} channels -> {args.out}")
