"""Write the README's pictures from a `make demo` output folder.

    .venv/bin/python scripts/readme_pictures.py demo_out

docs/demo_grid.jpg is the demo's grid.png as a JPEG; docs/goldfish_transparency.jpg puts the
goldfish image beside its RGBA version composited over white (the transparency map as alpha).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_out", type=Path)
    ap.add_argument("--side", type=int, default=192, help="side of each half of the transparency picture")
    args = ap.parse_args()
    with Image.open(args.demo_out / "grid.png") as grid:
        grid.convert("RGB").save(DOCS / "demo_grid.jpg", quality=88)
    side, gap = args.side, 4
    with Image.open(args.demo_out / "logits" / "1.png") as rgb, Image.open(args.demo_out / "logits" / "1_rgba.png") as rgba:
        white = Image.new("RGBA", rgba.size, "white")
        faded = Image.alpha_composite(white, rgba.convert("RGBA")).convert("RGB")
        pair = Image.new("RGB", (2 * side + gap, side), "white")
        pair.paste(rgb.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (0, 0))
        pair.paste(faded.resize((side, side), Image.Resampling.LANCZOS), (side + gap, 0))
    pair.save(DOCS / "goldfish_transparency.jpg", quality=88)
    print(f"wrote {DOCS / 'demo_grid.jpg'} and {DOCS / 'goldfish_transparency.jpg'}")


if __name__ == "__main__":
    main()
