"""The tokenizer of a frozen encoder: the model's own, a local Hugging Face folder, or (random-init
architecture runs only) another open_clip model's, sized to the model's context length."""

from __future__ import annotations

import os
from typing import Any, Callable

import open_clip
from torch import nn


class EncoderLoadError(ValueError):
    """The encoder could not be built from the given spec (unknown name, missing file, no tokenizer)."""


def load_tokenizer(spec: Any, model: nn.Module) -> Callable:
    """The tokenizer ``spec.tokenizer`` names (``spec``: a :class:`~dcsm.model.encoders.EncoderSpec`), for ``model``'s context length.

    Raises:
        EncoderLoadError: the tokenizer cannot be built here (a Hugging Face tokenizer not in the
            cache, ``transformers`` missing) or another model's tokenizer with pretrained weights.
    """
    ctx = getattr(model, "context_length", None) or getattr(getattr(model, "text", None), "context_length", None)
    name = spec.tokenizer
    try:
        if name is None:
            return open_clip.get_tokenizer(spec.model)
        if os.path.isdir(name):
            cfg = open_clip.get_model_config(spec.model) or {}
            kwargs = cfg.get("text_cfg", {}).get("tokenizer_kwargs", {})
            return open_clip.tokenizer.HFTokenizer(name, context_length=ctx, **kwargs)
    except Exception as err:  # offline HF download, missing transformers
        where = f"tokenizer '{name}'" if name else f"the tokenizer of '{spec.model}'"
        arch = " or, for a random-init architecture run (pretrained=null), encoder.tokenizer=ViT-B-16" if spec.pretrained is None else ""
        raise EncoderLoadError(
            f"could not build {where}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Fix: install "
            "transformers and give a local Hugging Face tokenizer folder as encoder.tokenizer=<dir> (or put it in the HF "
            f"cache){arch}."
        ) from None
    if name not in open_clip.list_models():
        raise EncoderLoadError(
            f"encoder.tokenizer='{name}' is neither a local tokenizer folder nor an open_clip model name. "
            "Fix: give an existing folder, a model name, or null for the model's own tokenizer."
        )
    if spec.pretrained is not None and name != spec.model:
        raise EncoderLoadError(
            f"encoder.tokenizer='{name}' would feed '{spec.model}' pretrained weights ids from another vocabulary. "
            "Fix: encoder.tokenizer=null or a local copy of the model's own tokenizer (another model's tokenizer is "
            "only for random-init architecture tests, pretrained=null)."
        )
    try:
        return open_clip.get_tokenizer(name, context_length=ctx)
    except Exception as err:
        raise EncoderLoadError(f"could not build the tokenizer of '{name}': {type(err).__name__}: {err}. Fix: choose "
                               "a model with open_clip's CLIP tokenizer.") from None
