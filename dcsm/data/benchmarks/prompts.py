"""Caption prompt styles for benchmark evaluation.

``raw`` leaves captions as they are in the benchmark files. ``reference`` reproduces what the
DCSM authors' evaluation feeds its DCSM scorer:

1. WhatsUp Controlled-A/B only, in their controlled-images dataset class: ``caption.replace(" on", " above")
   .replace(" under", " below")`` -- plain substring replacement, case-sensitive, no word
   boundary after the word (so " onion" would become " aboveion"; no real caption has that).
2. Every benchmark, in their DCSM evaluation loop: each caption
   goes through ``.replace(" behind ", " above ").replace(" in front of ", " below ")
   .replace(" bottom", " below").replace(" top", " above")`` (substring, case-sensitive).
3. Then a prefix is prepended (for the DCSM scorer and the plain-CLIP baselines alike), chosen by the loader name: ``"An image of a "`` if it contains
   "clevr" (CLEVR-bind), else ``"An image of "`` if it contains "whats" (WhatsUp A/B) or
   "vg_attr" (VG-Attribution); no prefix for COCO/GQA-spatial, NegBench or NCD. SugarCrepe is
   not part of their evaluation; ``reference`` gives it step 2 and no prefix. The caption's
   own casing is kept ("An image of A mug above a table").

The authors' plain-CLIP baselines get steps 1 and 3 but not 2;
the ``reference`` style here is the DCSM-scorer path (1+2+3). ``synthetic`` scenes are not part
of the authors' evaluation: ``reference`` returns their captions unchanged.
"""

from __future__ import annotations

__all__ = ["PROMPT_STYLES", "REFERENCE_BENCHMARKS", "apply_prompt_style", "check_prompt_style"]

PROMPT_STYLES = ("raw", "reference")

_PREFIX_PLAIN = "An image of "
_PREFIX_ARTICLE = "An image of a "

#: Dataset-level 3-D -> 2-D mapping of the WhatsUp controlled sets (step 1).
_WHATSUP_DATASET_MAP = ((" on", " above"), (" under", " below"))
#: Evaluation-time mapping applied to every benchmark (step 2), in this order.
_EVAL_MAP = (
    (" behind ", " above "),
    (" in front of ", " below "),
    (" bottom", " below"),
    (" top", " above"),
)

#: benchmark family -> (apply the WhatsUp dataset map, apply the eval map, prefix)
_FAMILY_RULES: dict[str, tuple[bool, bool, str]] = {
    "whatsup": (True, True, _PREFIX_PLAIN),
    "whatsup_qa": (False, True, ""),
    "negbench": (False, True, ""),
    "clevr_bind": (False, True, _PREFIX_ARTICLE),
    "vg_attr": (False, True, _PREFIX_PLAIN),
    "ncd": (False, True, ""),
    "sugarcrepe": (False, True, ""),  # not in the authors' evaluation: their scorer-path word map, no prefix
    "synthetic": (False, False, ""),
}

#: Accepted benchmark names (families and the subset names the loaders in dcsm.data.benchmarks use).
_ALIASES: dict[str, str] = {
    **{name: name for name in _FAMILY_RULES},
    "whatsup_a": "whatsup",
    "whatsup_b": "whatsup",
    "controlled_a": "whatsup",
    "controlled_b": "whatsup",
    "coco_qa_one": "whatsup_qa",
    "coco_qa_two": "whatsup_qa",
    "gqa_qa_one": "whatsup_qa",
    "gqa_qa_two": "whatsup_qa",
    "negbench_coco": "negbench",
    "negbench_voc": "negbench",
    "vg_attribution": "vg_attr",
    **{f"clevr_bind_{split}": "clevr_bind" for split in ("train", "val", "gen")},
    **{f"sugarcrepe_{name}": "sugarcrepe" for name in (
        "add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")},
}
REFERENCE_BENCHMARKS = tuple(sorted(_ALIASES))


def _replace_all(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def check_prompt_style(style: str) -> None:
    """Raise the one-line error for an ``eval.prompt_style`` that is not one of :data:`PROMPT_STYLES`."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}. Fix: eval.prompt_style=one of {PROMPT_STYLES}.")


def apply_prompt_style(caption: str, style: str, benchmark: str) -> str:
    """Return ``caption`` as the given prompt style presents it for ``benchmark``.

    Args:
        caption: an option exactly as in the benchmark file.
        style: "raw" (unchanged) or "reference" (the DCSM authors' evaluation prompts).
        benchmark: "whatsup", "whatsup_qa", "negbench", "synthetic", "clevr_bind", "vg_attr",
            "ncd", or a subset name such as "controlled_a" / "negbench_voc" (case-insensitive).
            Only checked for the reference style.

    Raises:
        ValueError: unknown style, or unknown benchmark for the reference style.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {PROMPT_STYLES}")
    if style == "raw":
        return caption
    family = _ALIASES.get(benchmark.lower())
    if family is None:
        raise ValueError(
            f"no reference prompt rules for benchmark {benchmark!r}; expected one of {REFERENCE_BENCHMARKS}"
        )
    dataset_map, eval_map, prefix = _FAMILY_RULES[family]
    text = caption
    if dataset_map:
        text = _replace_all(text, _WHATSUP_DATASET_MAP)
    if eval_map:
        text = _replace_all(text, _EVAL_MAP)
    return prefix + text
