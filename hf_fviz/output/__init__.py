"""The output layer: results -> files. Data flows hub -> engine -> output -> faces; this package
imports only the shared vocabulary (errors, results), never the engine or hub internals.

- `manifest`: the `Manifest` / `Item` records of manifest.json (read and written only there);
- `writer`: `safe_name`, `atomic_write`, `staged_folder` (out-dir check, move into place);
- `grid`: the one grid renderer (`tile_grid`) and the caption builders;
- `render`: a run's images and output folder (`save`); `imagesets`, `exemplars`: the output
  folders of dual/facets and of `hf-fviz exemplars`;
- `atlas_store`: an atlas folder (records, merge, checks);
- `card` (public names) over `card_assets`, `card_section`, `card_meta`, `publish`: model cards.
- `card_read`: a card's section and the images it links, read back (the Space shows them).
"""
