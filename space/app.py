"""hf-fviz Space: see what a unit of any Hugging Face vision model responds to, by the model's ID.

The app lives in the hf_fviz package (`hf_fviz.space`); this file starts it. `hf-fviz space export
DIR` writes this same file into a deployable Space folder.

    python app.py          # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured
"""

from hf_fviz.space.app import build_demo, launch, main  # noqa: F401

if __name__ == "__main__":
    main()
