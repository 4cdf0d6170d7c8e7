"""Model-card publishing: one hf_fviz section and a few small images on a model's card.

Any output folder of `visualize`, `dual`, `facets` or `atlas` (they share the manifest contract,
see DESIGN.md) becomes:

- assets under `feature_visualizations/<method>-<layer>/` (a grid of at most 1 MB and per-unit
  images of at most 512 px), and
- one section of README.md between `<!-- hf-fviz:start -->` and `<!-- hf-fviz:end -->`, plus the
  `feature-visualization` tag in the YAML metadata.

Everything else in the card stays byte for byte as it was: the front matter is edited as text
(a YAML parse/dump round trip would reorder keys, drop comments and change quoting), line endings
are kept, and a second run gives the same file as the first. The hub path is one
`create_commit(create_pr=True, parent_commit=<sha the card was read at>)`: never a push to main.

The public names of card publishing, from the modules that do each part: `manifest` (reading
the folder), `card_assets` (the images), `card_section` (the section text), `card_meta` (tag and
markers in the card's text), `publish` (local clone or hub pull request).
"""

from __future__ import annotations

from .card_assets import ASSET_DIR, MAX_GRID_BYTES, MAX_IMAGE_PX, MAX_UNITS, Asset, AssetLimits, Assets, asset_folder, prepare_assets
from .card_meta import END, START, TAG, add_tag, update_card, upsert_section
from .card_section import HUB_URL, SPACE_URL, render_section
from .grid import build_grid
from .manifest import Item, Manifest
from .publish import MAX_CARD_BYTES, PublishResult, publish
from .writer import safe_name

read_output = Manifest.read
"""Read and check DIR/manifest.json (`Manifest.read`): what `publish` puts on the card."""

__all__ = [
    "ASSET_DIR", "END", "HUB_URL", "MAX_CARD_BYTES", "MAX_GRID_BYTES", "MAX_IMAGE_PX", "MAX_UNITS", "SPACE_URL", "START",
    "TAG", "Asset", "AssetLimits", "Assets", "Item", "Manifest", "PublishResult", "add_tag", "asset_folder", "build_grid",
    "prepare_assets", "publish", "read_output", "render_section", "safe_name", "update_card", "upsert_section",
]
