"""Rendering styles: background, object size, jitter and margins of the ``default``, ``shifted`` and
``heldout`` renderers (:class:`Style`, :data:`STYLES`)."""

from __future__ import annotations

from dataclasses import dataclass

from .vocab import (
    BACKGROUND_PATTERNS,
    DEFAULT_STYLE,
    HELDOUT_STYLE,
    MAX_CROSS_OFFSET,
    MIN_OBJECT_GAP,
    MIN_PRIMARY_SEPARATION,
    MIN_SIZE_RATIO,
    RGB,
    SHIFTED_STYLE,
    SMALL,
    TRANSFER_STYLE,
)


__all__ = ["Style", "STYLES"]

@dataclass(frozen=True)
class Style:
    """A rendering distribution.

    Attributes:
        name: style name (key in :data:`STYLES`).
        background_palette: base background colours; one is drawn per scene.
        background_jitter: max per-channel uniform jitter added to the background colour.
        background_noise_std: std of per-pixel Gaussian noise on the background (0 = flat).
        small_size: (min, max) side of a small object, as a fraction of the image side.
        big_size: (min, max) side of a big object, as a fraction of the image side.
        margin: minimum distance between any object and the image border (fraction).
        position_jitter: in spatial scenes, max offset between the two object centres on the
            axis perpendicular to the relation (fraction, <= :data:`MAX_CROSS_OFFSET`).
        colour_jitter: max per-channel uniform jitter added to object colours.
        background_pattern: ``plain``, ``stripes`` (diagonal stripes alternating the drawn
            background colour with ``stripe_rgb``) or ``checks`` (a checkerboard of the two).
        stripe_rgb: second stripe / check colour (``stripes``, ``checks``).
        stripe_period: stripe period / check side as a fraction of the image side.
        outline_rgb: colour of an outline drawn around every object, or None (no outline).
        outline_width: outline width as a fraction of the image side (>= 1 pixel when set).

    The last five fields default to the plain, outline-free rendering, which draws no extra
    random numbers: ``default`` and ``shifted`` scenes are unchanged by their existence.
    """

    name: str
    background_palette: tuple[RGB, ...]
    background_jitter: int
    background_noise_std: float
    small_size: tuple[float, float]
    big_size: tuple[float, float]
    margin: float
    position_jitter: float
    colour_jitter: int
    background_pattern: str = "plain"
    stripe_rgb: RGB = (0, 0, 0)
    stripe_period: float = 0.1
    outline_rgb: RGB | None = None
    outline_width: float = 0.0

    def __post_init__(self) -> None:
        if self.background_pattern not in BACKGROUND_PATTERNS:
            raise ValueError(f"style {self.name!r}: background_pattern must be one of {BACKGROUND_PATTERNS}")
        if not self.background_palette:
            raise ValueError(f"style {self.name!r}: empty background palette")
        for lo, hi in (self.small_size, self.big_size):
            if not 0.0 < lo <= hi < 1.0:
                raise ValueError(f"style {self.name!r}: bad size range {(lo, hi)}")
        if self.big_size[0] < MIN_SIZE_RATIO * self.small_size[1]:
            raise ValueError(
                f"style {self.name!r}: big sizes must be >= {MIN_SIZE_RATIO}x small sizes"
            )
        if not 0.0 <= self.position_jitter <= MAX_CROSS_OFFSET:
            raise ValueError(
                f"style {self.name!r}: position_jitter must be in [0, {MAX_CROSS_OFFSET}]"
            )
        # Two big objects must fit side by side with the required spatial separation.
        span = 1.0 - 2.0 * self.margin - self.big_size[1]
        if span < max(MIN_PRIMARY_SEPARATION, self.big_size[1] + MIN_OBJECT_GAP):
            raise ValueError(f"style {self.name!r}: objects too big for the margin")

    def size_range(self, size_word: str) -> tuple[float, float]:
        """The (min, max) side fraction for ``"small"`` or ``"big"``."""
        return self.small_size if size_word == SMALL else self.big_size


STYLES: dict[str, Style] = {
    DEFAULT_STYLE: Style(
        name=DEFAULT_STYLE,
        background_palette=(
            (236, 236, 232),  # off-white
            (205, 205, 205),  # light grey
            (222, 212, 190),  # beige
            (196, 208, 222),  # pale blue-grey
            (172, 172, 168),  # mid grey
            (208, 222, 204),  # pale green-grey
        ),
        background_jitter=12,
        background_noise_std=0.0,
        small_size=(0.12, 0.16),
        big_size=(0.27, 0.33),
        margin=0.08,
        position_jitter=0.06,
        colour_jitter=10,
    ),
    SHIFTED_STYLE: Style(
        name=SHIFTED_STYLE,
        background_palette=(
            (40, 40, 44),  # charcoal
            (72, 72, 72),  # dark grey
            (96, 98, 102),  # slate
            (58, 50, 44),  # dark brown
            (44, 56, 64),  # dark teal-grey
            (118, 118, 118),  # mid-dark grey
        ),
        background_jitter=10,
        background_noise_std=14.0,
        small_size=(0.08, 0.11),
        big_size=(0.20, 0.25),
        margin=0.025,
        position_jitter=0.08,
        colour_jitter=14,
    ),
    # Held out of every training (DCSM scorer and the small CLIP's pretraining): stripes and
    # white outlines never occur there.
    HELDOUT_STYLE: Style(
        name=HELDOUT_STYLE,
        background_palette=(
            (150, 132, 112),  # sand
            (112, 138, 140),  # teal-grey
            (138, 118, 138),  # mauve-grey
        ),
        background_jitter=8,
        background_noise_std=0.0,
        small_size=(0.11, 0.14),
        big_size=(0.24, 0.29),
        margin=0.06,
        position_jitter=0.07,
        colour_jitter=10,
        background_pattern="stripes",
        stripe_rgb=(88, 88, 96),
        stripe_period=0.09,
        outline_rgb=(250, 250, 250),
        outline_width=0.015,
    ),
    # The format-transfer files (dcsm.commands.format_transfer): checkerboards occur in no split and
    # no training (the small CLIP's pretraining draws outlines, never checkerboards).
    TRANSFER_STYLE: Style(
        name=TRANSFER_STYLE,
        background_palette=(
            (226, 214, 236),  # lavender
            (214, 232, 236),  # ice blue
            (238, 226, 212),  # cream
        ),
        background_jitter=8,
        background_noise_std=0.0,
        small_size=(0.13, 0.15),
        big_size=(0.25, 0.30),
        margin=0.07,
        position_jitter=0.05,
        colour_jitter=8,
        background_pattern="checks",
        stripe_rgb=(150, 150, 150),
        stripe_period=0.125,
        outline_rgb=(20, 20, 20),
        outline_width=0.012,
    ),
}
