"""A head is tied to the encoder architecture it was trained on: the check every loader runs on an
encoder handed to it (a shared one, or evaluate.py's ``encoder.pretrained`` override)."""

from __future__ import annotations

from ..model.encoders import FrozenCLIP


def check_encoder_model(path: str, cfg: dict, encoder: FrozenCLIP | None) -> None:
    """Refuse ``encoder`` unless it is ``cfg['encoder']['model']``: a head's channels and grid follow
    its encoder, and one trained on another model scores nonsense or fails deep inside the CNN
    (or, for the authors' checkpoints, reads as a malformed file)."""
    trained = (cfg.get("encoder") or {}).get("model")
    if encoder is not None and trained is not None and encoder.spec.model != trained:
        raise ValueError(
            f"'{path}' was trained on encoder.model={trained}, not on the encoder given ({encoder.spec.model}). "
            f"Fix: load it without an encoder (its own is rebuilt from the file), or train a head on {encoder.spec.model}."
        )
