"""Which files an evaluation looks at: the images, the references, and how they pair up."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from stftblur._atomic import PathLike
from stftblur.io import ImageInfo, find_images

__all__ = ["Inventory", "pair_images", "take_inventory"]


def pair_images(images: Sequence[str], references: Sequence[str]) -> Tuple[Dict[str, str], List[str], List[str]]:
    """Pair relative paths: the same path, else the same path without its extension.

    Convention:
        ``recon/a.png`` pairs with ``recon/a.png`` and, failing that, with the only reference
        whose path differs only by its extension (``recon/a.jpg``, ``recon/a.tif``). Ambiguous
        matches (two references with the stem, or two images claiming one reference) are left
        unpaired. Paths are compared as given (case-sensitive).

    Returns:
        (image -> reference, images without a reference, references without an image).

    Examples:
        >>> pair_images(["a.png", "b.png", "c.png"], ["a.png", "b.tif", "d.png"])
        ({'a.png': 'a.png', 'b.png': 'b.tif'}, ['c.png'], ['d.png'])
    """
    ref_set, image_set = set(references), set(images)
    by_stem: Dict[str, List[str]] = {}
    for r in references:
        if r not in image_set:  # a reference with an exact match is taken by that image
            by_stem.setdefault(os.path.splitext(r)[0], []).append(r)
    pairs: Dict[str, str] = {p: p for p in images if p in ref_set}
    by_stem_pairs: Dict[str, str] = {}
    for p in images:
        candidates = by_stem.get(os.path.splitext(p)[0], [])
        if p not in pairs and len(candidates) == 1:
            by_stem_pairs[p] = candidates[0]
    claimed = Counter(by_stem_pairs.values())
    pairs.update({p: r for p, r in by_stem_pairs.items() if claimed[r] == 1})
    used = set(pairs.values())
    return pairs, [p for p in images if p not in pairs], [r for r in references if r not in used]


@dataclasses.dataclass
class Inventory:
    """The files of an evaluation before anything is read: images, references and their pairing.

    Convention:
        Relative paths as :func:`find_images` gives them; ``pairs`` maps an image to its
        reference as :func:`pair_images` decides. Without a reference folder the reference
        fields are empty.

    Examples:
        >>> Inventory(Path("in"), None, ["a.png"], []).pairs
        {}
    """

    images_dir: Path
    reference_dir: Optional[Path]
    images: List[str]
    ignored: List[str]
    references: List[str] = dataclasses.field(default_factory=list)
    ignored_references: List[str] = dataclasses.field(default_factory=list)
    pairs: Dict[str, str] = dataclasses.field(default_factory=dict)
    unpaired_images: List[str] = dataclasses.field(default_factory=list)
    unpaired_references: List[str] = dataclasses.field(default_factory=list)


def take_inventory(images_dir: PathLike, reference_dir: Optional[PathLike] = None) -> Inventory:
    """List the images of ``images_dir`` (and ``reference_dir``) and pair them (:func:`pair_images`).

    Convention:
        Only names are listed (see :func:`find_images`); :class:`NotADirectoryError` for a
        missing folder.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> take_inventory(d).images
        []
    """
    images, ignored = find_images(images_dir)
    inv = Inventory(Path(images_dir), None if reference_dir is None else Path(reference_dir), images, ignored)
    if reference_dir is not None:
        inv.references, inv.ignored_references = find_images(reference_dir)
        inv.pairs, inv.unpaired_images, inv.unpaired_references = pair_images(images, inv.references)
    return inv


def _batches(items: Sequence[str], infos: Dict[str, ImageInfo], batch_size: int) -> Iterator[List[str]]:
    """Items grouped by (channels, height, width), in order of first appearance, then chunked."""
    groups: Dict[Tuple[int, int, int], List[str]] = {}
    for p in items:
        i = infos[p]
        groups.setdefault((i.channels, i.height, i.width), []).append(p)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]
