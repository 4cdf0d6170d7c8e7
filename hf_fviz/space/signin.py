"""Sign in with Hugging Face and publish to a model card as a pull request with the visitor's login."""

import os
from typing import Any

import gradio as gr

import hf_fviz
from hf_fviz.hub.size import is_hub_id


MOCK_OAUTH_TOKEN = "mock-oauth-token-for-local-dev"  # what gradio's local stand-in for OAuth hands out
LOCAL_PUBLISH_NOTE = (
    "Publishing to a model card opens a pull request with your Hugging Face login, on the hosted Space. "
    "Here, download the zip and run `hf-fviz publish MODEL --from DIR --pr` (or log in with `hf auth login` "
    "and restart the app)."
)


def oauth_available() -> bool:
    """Sign-in works on a Space with `hf_oauth: true`; locally Gradio mocks it with the machine's
    own token (it needs one, and the hub to look it up)."""
    if os.environ.get("SPACE_ID"):
        return bool(os.environ.get("OAUTH_CLIENT_ID"))
    from huggingface_hub import constants, get_token

    return not constants.HF_HUB_OFFLINE and get_token() is not None


def publish_to_card(last: dict | None, oauth_token: Any) -> str:
    """Open a pull request on the model's card with the visitor's own login (never a push)."""
    if oauth_token is None or not getattr(oauth_token, "token", None):
        raise gr.Error("Sign in with Hugging Face first: the pull request is opened with your account.", title="Not signed in")
    if not last or not last.get("folder"):
        raise gr.Error("Run a visualization first; then publish it.", title="Nothing to publish")
    model_id = last["model_id"].partition("@")[0]
    if not is_hub_id(model_id):
        raise gr.Error(f"{model_id} is not a hub model: only hub models have a card to publish to.", title="No card")
    token = oauth_token.token
    if token == MOCK_OAUTH_TOKEN and not os.environ.get("SPACE_ID"):
        token = None  # Gradio's local stand-in login: publish with this machine's own token instead
    result = hf_fviz.publish(model_id, last["folder"], create_pr=True, token=token)
    url = getattr(result, "url", None) or f"https://huggingface.co/{model_id}/discussions"
    return f"Pull request opened: [{url}]({url}). The model's owners decide whether to merge it."

