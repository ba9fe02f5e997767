"""`contact_sheet`: one PNG showing a dataset at a glance (portraits, or portrait + training views per avatar).

Layout (no gaps): every cell is `cell`×`cell` pixels with a LABEL_HEIGHT strip under it when labels are on.
- views_per_avatar = 0: one portrait per avatar in a near-square grid (`columns` wide, default ceil(sqrt(n))).
- views_per_avatar = N > 0: one row per avatar: the portrait, then N training views evenly spaced.
Sheet size: (columns · cell, rows · (cell + label height)).
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine.errors import UserError
from engine.io import atomic_write
from training.data.format import PORTRAIT_FILE, TRAIN_TRANSFORMS, read_index, read_transforms

BACKGROUND = (224, 224, 224)  # light grey: shows both dark and white avatars
TEXT_COLOUR = (40, 40, 40)
LABEL_HEIGHT = 14
FONT_SIZE = 10


def grid_shape(n_avatars: int, views_per_avatar: int, columns: int | None) -> tuple[int, int]:
    """(columns, rows) of the sheet."""
    if views_per_avatar > 0:
        return 1 + views_per_avatar, n_avatars
    cols = max(1, min(columns or math.ceil(math.sqrt(n_avatars)), n_avatars))
    return cols, math.ceil(n_avatars / cols)


def _cell_image(path: Path | None, cell: int) -> Image.Image | None:
    """The picture at `path` composited over the background and fitted into cell×cell; None if unreadable."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
    except (OSError, SyntaxError, ValueError):
        return None
    scale = cell / max(rgba.size)
    size = (max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale)))
    rgba = rgba.resize(size, Image.Resampling.LANCZOS)
    tile = Image.new("RGBA", (cell, cell), BACKGROUND + (255,))
    tile.alpha_composite(rgba, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return tile.convert("RGB")


def _views(folder: Path, count: int) -> list[Path | None]:
    """`count` training views evenly spaced, skipping view 0 (it is the portrait) when there are others."""
    try:
        frames = read_transforms(folder / TRAIN_TRANSFORMS).frames
    except UserError:
        return [None] * count
    pool = frames[1:] or frames
    picks = [pool[i * len(pool) // count] for i in range(min(count, len(pool)))]
    return [folder / f.file_path for f in picks] + [None] * (count - len(picks))


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """Shorten in the middle ("avatar_..._0042"): ids often differ only at the end."""
    keep = len(text)
    fitted = text
    while keep > 0 and draw.textlength(fitted, font=font) > width:
        keep -= 1
        fitted = text[:keep // 2] + ".." + text[len(text) - (keep - keep // 2):]
    return fitted if keep > 0 else ""


def _centred_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], width: int, text: str, font) -> None:
    """Text centred horizontally in [x, x + width) (no anchors: PIL's bitmap fallback font has none)."""
    x = xy[0] + (width - draw.textlength(text, font=font)) / 2
    draw.text((x, xy[1]), text, fill=TEXT_COLOUR, font=font)


def _pick_avatars(root: Path, avatars: list[str] | None, max_avatars: int) -> list[str]:
    listed = [str(a) for a in read_index(root)["avatars"]]
    if avatars:
        unknown = [a for a in avatars if a not in listed]
        if unknown:
            raise UserError(f"{root}: no avatar(s) {', '.join(unknown)} in the index")
        listed = list(avatars)
    if not listed:
        raise UserError(f"{root}: the dataset lists no avatars")
    return listed[:max_avatars]


def contact_sheet(root: Path, out_png: Path, avatars: list[str] | None = None, views_per_avatar: int = 0,
                  cell: int = 128, columns: int | None = None, label: bool = True, max_avatars: int = 64) -> Path:
    """Write the contact sheet of dataset `root` to `out_png` (atomically) and return its path.

    avatars: ids to show (default: all, in index order), at most `max_avatars` of them.
    """
    root, out_png = Path(root), Path(out_png)
    if not 16 <= cell <= 2048:
        raise UserError(f"cell size must be 16..2048 pixels, got {cell}")
    if views_per_avatar < 0 or max_avatars < 1 or (columns is not None and columns < 1):
        raise UserError("views must be >= 0, max avatars >= 1 and columns >= 1")
    ids = _pick_avatars(root, avatars, max_avatars)
    cols, rows = grid_shape(len(ids), views_per_avatar, columns)
    label_h = LABEL_HEIGHT if label else 0
    sheet = Image.new("RGB", (cols * cell, rows * (cell + label_h)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=FONT_SIZE)
    cells: list[tuple[Path | None, str]] = []  # (image, label) in reading order
    for avatar_id in ids:
        folder = root / avatar_id
        cells.append((folder / PORTRAIT_FILE, avatar_id))
        if views_per_avatar:
            cells += [(p, p.stem if p else "") for p in _views(folder, views_per_avatar)]
    for k, (path, text) in enumerate(cells):
        x, y = (k % cols) * cell, (k // cols) * (cell + label_h)
        tile = _cell_image(path, cell)
        if tile is not None:
            sheet.paste(tile, (x, y))
        elif path is not None:
            _centred_text(draw, (x, y + cell // 2 - FONT_SIZE // 2), cell, "missing", font)
        if label:
            _centred_text(draw, (x, y + cell + 1), cell, _fit_text(draw, text, font, cell - 4), font)
    atomic_write(out_png, lambda tmp: sheet.save(tmp, format="PNG"))
    return out_png
