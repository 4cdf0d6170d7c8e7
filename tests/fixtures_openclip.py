"""Tiny random image-text repos: OpenCLIP (ViT, timm ConvNeXt and ViT trunks, ModifiedResNet) and transformers
CLIP / SigLIP full models, each with a tokenizer that works offline.

OpenCLIP repos are written the way open_clip's own `push_to_hf_hub` writes them: the full
`model_cfg` and `preprocess_cfg` in `open_clip_config.json` (so open_clip builds them from the
repo alone, no registered name needed) and `open_clip_model.safetensors`. Their text towers use
the CLIP BPE tokenizer that ships inside open_clip (hence the 49408-token vocabulary). The
transformers repos get a small real tokenizer (CLIP BPE with a byte-level vocabulary; a
word-level `tokenizers` tokenizer for SigLIP, whose own one needs sentencepiece).

`build_openclip(src_root)` is what the zoo calls; `build(src_root)` adds the transformers repos.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from hf_fviz.zoo_models import OPENCLIP_TINY as OPENCLIP, write_openclip

ORG = "fviz-test"
MEAN = [0.5, 0.4, 0.3]  # zoo_models' statistics (not OpenAI's, so a hard-coded default would be caught)
STD = [0.2, 0.25, 0.3]
WORDS = ["a", "an", "photo", "of", "red", "green", "blue", "apple", "dog", "cat", "car", "tree", "sky", "fish"]


def build_openclip(src_root: Path) -> dict[str, Path]:
    """Save each tiny OpenCLIP model (`zoo_models.OPENCLIP_TINY`, shared with the zoo) under
    `src_root/openclip/<name>/`; returns {repo_id: folder}."""
    out: dict[str, Path] = {}
    for i, name in enumerate(OPENCLIP):
        folder = Path(src_root) / "openclip" / name
        out[f"{ORG}/{name}"] = folder
        if (folder / "open_clip_model.safetensors").is_file():
            continue  # built earlier in this session
        write_openclip(folder, name, seed=100 + i)
    return out


def _clip_tokenizer():
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [("r", "e"), ("re", "d</w>"), ("a", "p"), ("ap", "p"), ("l", "e</w>"), ("d", "o"), ("do", "g</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges), len(vocab)


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=16), len(vocab)


def build_transformers(src_root: Path) -> dict[str, Path]:
    """Tiny CLIPModel and SiglipModel repos with their tokenizers and image processors."""
    import transformers as tf

    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8)
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37, max_position_embeddings=16)
    out: dict[str, Path] = {}
    for i, name in enumerate(["tiny-clip-text", "tiny-siglip-text"]):
        folder = Path(src_root) / "openclip" / name
        out[f"{ORG}/{name}"] = folder
        if (folder / "config.json").is_file():
            continue
        torch.manual_seed(200 + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "tiny-clip-text":
                tok, n = _clip_tokenizer()
                ids = dict(bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1)
                model = tf.CLIPModel(tf.CLIPConfig(text_config=dict(text, vocab_size=n, **ids), vision_config=vision,
                                                   projection_dim=16))
                proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                             image_mean=MEAN, image_std=STD)
            else:
                tok, n = _word_tokenizer()
                model = tf.SiglipModel(tf.SiglipConfig(text_config=dict(text, vocab_size=n, pad_token_id=0, eos_token_id=1),
                                                       vision_config=vision))
                proc = tf.SiglipImageProcessor(size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD)
            model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        proc.save_pretrained(folder)
    return out


def build(src_root: Path) -> dict[str, Path]:
    """Every tiny image-text repo; {repo_id: folder} for conftest's hub cache."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        out = {**build_openclip(src_root), **build_transformers(src_root)}
    finally:
        transformers.logging.set_verbosity(verbosity)
    # LAION's layout: a transformers copy (config.json, model.safetensors) beside the OpenCLIP files
    dual = Path(src_root) / "openclip" / "tiny-clip-dual"
    if not dual.is_dir():
        shutil.copytree(out[f"{ORG}/tiny-clip-text"], dual)
        for name in ("open_clip_config.json", "open_clip_model.safetensors", "README.md"):
            shutil.copy(out[f"{ORG}/tiny-openclip-vit"] / name, dual / name)
    out[f"{ORG}/tiny-clip-dual"] = dual
    return out
