"""Figures a person reads: labelled panels of images shown pixel for pixel, and saving figures.

matplotlib's object API only (no pyplot state, no display needed); matplotlib is imported when
a function is called, not when this module is. matplotlib is the ``plot`` extra
(``pip install 'stftblur[plot]'``); without it the functions raise
:class:`stftblur.errors.MissingExtraError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from stftblur._atomic import PathLike, atomic_write
from stftblur._checks import check_positive_int
from stftblur.errors import require_extra
from stftblur.io import make_grid

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["image_panels", "save_figure"]

_TITLE_LINE = 16  # pixels per line of a panel title (10 pt at 100 dpi, with leading)
_MARGIN = 10
_GAP = 20


def image_panels(
    panels: "Mapping[str, torch.Tensor]",
    *,
    nrow: int = 4,
    scale: int = 4,
    title: Optional[str] = None,
    dpi: int = 100,
) -> "Figure":
    """Side-by-side labelled panels, each a grid of images, every image pixel ``scale`` x ``scale`` figure pixels.

    Convention:
        Each panel is a (B, C, H, W) batch with C = 1 (gray) or 3 (RGB), values clamped to
        [0, 1] and shown as they are (black 0, white 1; no rescaling), tiled by
        :func:`stftblur.io.make_grid` (``nrow`` images per row, 2-pixel mid-gray borders). The
        figure is laid out in exact pixels: saved at ``dpi`` (as :func:`save_figure` does), each
        image pixel covers ``scale`` x ``scale`` pixels of the file, drawn with nearest-neighbour
        interpolation, so single pixels stay visible. Panel labels (they may hold newlines) go
        above the panels, ``title`` above everything.

    Args:
        panels: label -> images, in display order (at least one panel, each with an image).
        nrow: images per grid row.
        scale: file pixels per image pixel (>= 1).
        title: an optional figure title.
        dpi: the resolution the pixel layout is computed for.

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Examples:
        >>> import torch
        >>> fig = image_panels({"inputs": torch.rand(16, 1, 28, 28), "samples": torch.rand(8, 1, 28, 28)}, scale=3)
        >>> [ax.get_title() for ax in fig.axes], [round(v * 100) for v in fig.get_size_inches()]  # file pixels
        (['inputs', 'samples'], [772, 402])

        Two 4x4-wide grids of 122 x 122 and 122 x 62 pixels at 3x, 20 pixels apart, 10-pixel margins
        and a 16-pixel label line: 10 + 366 + 20 + 366 + 10 = 772 by 10 + 16 + 366 + 10 = 402.
    """
    require_extra("matplotlib", "plot", "stftblur.viz.image_panels")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(panels, Mapping) or not panels:
        raise ValueError("panels must be a non-empty mapping label -> (B, C, H, W) images")
    nrow = check_positive_int(nrow, "nrow")
    scale = check_positive_int(scale, "scale")
    dpi = check_positive_int(dpi, "dpi")
    grids = {}
    for label, images in panels.items():
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"panels[{label!r}] must be a (B, C, H, W) tensor with B >= 1 and C = 1 or 3, got {shape}")
        grid = make_grid(images.detach().float().clamp(0.0, 1.0).cpu(), nrow=nrow)
        grids[label] = grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()
    label_lines = max(str(label).count("\n") + 1 for label in grids)
    top = _MARGIN + label_lines * _TITLE_LINE + (2 * _TITLE_LINE if title else 0)
    widths = [g.shape[1] * scale for g in grids.values()]
    height = max(g.shape[0] for g in grids.values()) * scale
    fig_w = 2 * _MARGIN + sum(widths) + _GAP * (len(widths) - 1)
    fig_h = top + height + _MARGIN
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    x = _MARGIN
    for (label, grid), w in zip(grids.items(), widths):
        h = grid.shape[0] * scale
        ax = fig.add_axes((x / fig_w, (fig_h - top - h) / fig_h, w / fig_w, h / fig_h))
        ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(label), fontsize=10)
        x += w + _GAP
    if title:
        fig.suptitle(title, y=1.0 - _MARGIN / fig_h, va="top", fontsize=12)
    return fig


def save_figure(fig: "Figure", path: PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically, in the format of ``path``'s extension (PNG by default).

    Convention:
        Parent folders are created; an existing file is replaced atomically (callers refuse
        that without ``--force``). ``dpi`` 100 keeps the pixel layout of :func:`image_panels`.

    Examples:
        >>> import tempfile, pathlib
        >>> from matplotlib.figure import Figure
        >>> save_figure(Figure(), pathlib.Path(tempfile.mkdtemp()) / "f.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    suffix = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=suffix))
