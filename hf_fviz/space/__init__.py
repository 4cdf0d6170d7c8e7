"""The Gradio Space as part of the package (so that an exported Space installs it from a wheel).

`app` is the entry point (needs the `space` extra: gradio); `deploy` exports and pushes a Space
folder and imports no gradio. Nothing is imported here: `hf-fviz space export` stays light."""
