"""Write the README's pictures.

    .venv/bin/python scripts/readme_pictures.py demo_out        # after `make demo`
    .venv/bin/python scripts/readme_pictures.py --transparency  # visualizes the goldfish itself

docs/demo_grid.jpg is the demo's grid.png as a JPEG. docs/goldfish_transparency.jpg shows the
goldfish visualization (default settings, seed 0) three times: as it is, with the transparency
map of every view as alpha (the whole-canvas view included: what hf_fviz showed before), and with
the map of the random crops only (what it shows now), each composited over white.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent.parent / "docs"


def transparency_picture(side: int) -> None:
    from hf_fviz import load_model, visualize
    from hf_fviz.output.render import display_image, to_uint8
    from hf_fviz.results import alpha_from_transparency

    model = load_model("builtin:mobilenetv2", device="cpu")
    (vis,) = visualize(model, classes=["goldfish"])
    rgb = display_image(vis.image)
    panels = [rgb]
    for alpha in (alpha_from_transparency(vis.extra["transparency_all"]), vis.alpha):
        panels.append(rgb * alpha[..., None] + (1 - alpha[..., None]))  # over white
    gap = 4
    pair = Image.new("RGB", (len(panels) * (side + gap) - gap, side), "white")
    for i, panel in enumerate(panels):
        pair.paste(Image.fromarray(to_uint8(panel)).resize((side, side), Image.Resampling.LANCZOS), (i * (side + gap), 0))
    pair.save(DOCS / "goldfish_transparency.jpg", quality=88)
    print(f"wrote {DOCS / 'goldfish_transparency.jpg'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_out", type=Path, nargs="?", help="a `make demo` output folder (for docs/demo_grid.jpg)")
    ap.add_argument("--transparency", action="store_true", help="also make docs/goldfish_transparency.jpg")
    ap.add_argument("--side", type=int, default=192, help="side of each panel of the transparency picture")
    args = ap.parse_args()
    if args.demo_out is not None:
        with Image.open(args.demo_out / "grid.png") as grid:
            grid.convert("RGB").save(DOCS / "demo_grid.jpg", quality=88)
        print(f"wrote {DOCS / 'demo_grid.jpg'}")
    if args.transparency:
        transparency_picture(args.side)
    if args.demo_out is None and not args.transparency:
        ap.error("give a demo output folder and/or --transparency")


if __name__ == "__main__":
    main()
