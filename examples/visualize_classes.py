"""Visualize ImageNet classes of a CNN by its hub id (timm or transformers), with MACO.

    python examples/visualize_classes.py                      # builtin:mobilenetv2, offline
    python examples/visualize_classes.py timm/resnet50.a1_in1k --classes "goldfish,volcano"

Writes OUT/manifest.json, OUT/logits/<class>.png (+ _rgba.png) and OUT/grid.png.
"""

import argparse

import hf_fviz
from hf_fviz import render

parser = argparse.ArgumentParser()
parser.add_argument("model", nargs="?", default="builtin:mobilenetv2", help="hub id, local folder or builtin:NAME")
parser.add_argument("--classes", default="goldfish,espresso,volcano", help="class names or indices, comma separated")
parser.add_argument("--steps", type=int, default=160)
parser.add_argument("--size", type=int, default=384)
parser.add_argument("--out", default="fviz-classes")
args = parser.parse_args()

model = hf_fviz.load_model(args.model)
vis = hf_fviz.visualize(model, classes=args.classes.split(","), steps=args.steps, size=args.size)
for v in vis:
    print(f"{v.label:>20}: logit {v.objective:.2f} on the whole image")
print("wrote", render.save(vis, args.out, model=model))
