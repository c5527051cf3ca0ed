"""NCD (the DCSM reference's ``NCD_colorful_composite_squares`` folder, read by
``COCODataset_color_nooppimg``).

Every ``.png``/``.jpeg``/``.jpg`` file whose name does not contain ``MIRROR``, named
``c1_A_c2_B.ext`` (colour, object, colour, object; further ``_`` fields are ignored, as the
reference does). Each image gives two items, the reference's two NCD subsets, both in subset
``ncd``: group ``order_ab`` (reference ``ncd_subset1``) with options ``("A picture of a c1 A and
a c2 B", "A picture of a c2 A and a c1 B")`` and group ``order_ba`` (``ncd_subset2``) with
``("A picture of a c2 B and a c1 A", "A picture of a c1 B and a c2 A")``; label 0. Files are
read in sorted order (the reference uses the directory order). Semantics follow the original
code; nothing is copied from it."""

from __future__ import annotations

from pathlib import Path

from ..reference_layout import IMAGE_SUFFIXES, attribute_captions
from .items import BenchmarkFormatError, MCQItem, PathLike, format_error


# --- NCD --------------------------------------------------------------------------------------
NCD_SUBSET = "ncd"
NCD_SKIP_MARK = "MIRROR"
NCD_NAME_FIELDS = 4  # c1_A_c2_B
NCD_GROUPS = ("order_ab", "order_ba")  # reference ncd_subset1 / ncd_subset2 (its settype 0 / 1)
NCD_CORRECT_INDEX = 0


def load_ncd(folder: PathLike, image_root: PathLike | None = None) -> list[MCQItem]:
    """Load the NCD folder (``c1_A_c2_B.png`` images, captions from the name).

    Args:
        folder: the folder of images (the reference's ``NCD_colorful_composite_squares``).
        image_root: unused (the images are the folder itself); accepted for the common
            ``(annotation, image_root)`` loader signature.

    Returns:
        Two items per image (groups ``order_ab`` then ``order_ba``), label 0, subset ``ncd``;
        ``row`` = 1-based position of the image in the sorted listing.

    Raises:
        BenchmarkFormatError: the folder holds no image, or a name has fewer than four ``_`` fields.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BenchmarkFormatError(f"{root}: not a folder. Fix: point at the NCD image folder (NCD_colorful_composite_squares)")
    names = sorted(
        f.name for f in root.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and NCD_SKIP_MARK not in f.name
    )
    if not names:
        raise BenchmarkFormatError(
            f"{root.name}: no .png/.jpeg/.jpg images (other than MIRROR_ ones). Fix: point at the NCD image folder "
            f"(folder: {root})"
        )
    items: list[MCQItem] = []
    for index, name in enumerate(names):
        parts = Path(name).stem.split("_")
        if len(parts) < NCD_NAME_FIELDS or not all(parts[:NCD_NAME_FIELDS]):
            raise format_error(
                root / name, f"{index + 1} (file {name})", "file name",
                f"expected colour1_object1_colour2_object2.ext, got {len(parts)} '_' field(s)",
                "rename it to e.g. red_apple_green_pear.png (use '-' inside words) or remove it",
            )
        c1, a, c2, b = parts[:NCD_NAME_FIELDS]
        for version, group in enumerate(NCD_GROUPS):
            items.append(MCQItem(
                raw_image_path=name, image_path=root / name, captions=attribute_captions(c1, a, c2, b, version),
                label=NCD_CORRECT_INDEX, subset=NCD_SUBSET, group=group, pair_key=None, row=index + 1,
                source=str(root),
            ))
    return items
