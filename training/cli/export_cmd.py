"""`rodinhd export`: an avatar → one file: a view (PNG), a sheet of views, a turntable (GIF/MP4), a mesh with
vertex colours (GLB/OBJ/PLY) or the self-contained avatar file. The same code as the studio's export dialog
(engine.exports); avatar.json beside the file records what was exported."""
from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg

FORMATS = ("png", "sheet", "gif", "mp4", "glb", "obj", "ply", "safetensors")  # = engine.exports.EXPORT_KINDS

# option → the formats it applies to (any other format refuses it)
OPTIONS = {
    "azimuth": ("png",), "elevation": ("png", "gif", "mp4"), "samples": ("png",),
    "resolution": ("png", "sheet", "gif", "mp4"), "background": ("png", "sheet", "gif", "mp4"),
    "views": ("sheet",), "columns": ("sheet",), "frames": ("gif", "mp4"), "fps": ("gif", "mp4"),
    "grid": ("glb", "obj", "ply"), "threshold": ("glb", "obj", "ply"),
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export an avatar: view PNG, sheet, turntable GIF/MP4, mesh GLB/OBJ/PLY, avatar file",
        description="rodinhd export AVATAR --format FORMAT --out FILE. Unset options use each format's default "
                    "(view 512 px, sheet/turntable 256 px, 36 frames at 12 fps, mesh grid 128).")
    p.add_argument("avatar", type=Path, help="avatar folder (avatar.safetensors + avatar.json) or avatar file")
    p.add_argument("--format", choices=FORMATS, help="what to export (default: from the --out suffix)")
    p.add_argument("--out", type=Path, required=True,
                   help="output file (without a suffix, the format's suffix is added)")
    p.add_argument("--decoder", type=Path,
                   help="decoder or model folder, for avatars saved before avatar files held their decoder")
    p.add_argument("--azimuth", type=float, help="view azimuth in degrees (0 = the portrait's view)")
    p.add_argument("--elevation", type=float, help="view / turntable elevation in degrees")
    p.add_argument("--resolution", type=int_arg, help="image size in pixels (view up to 1024)")
    p.add_argument("--background", choices=("white", "black", "transparent"),
                   help="image background (transparent: PNG only)")
    p.add_argument("--samples", type=int_arg, help="samples per ray (view)")
    p.add_argument("--views", type=int_arg, help="views in a sheet")
    p.add_argument("--columns", type=int_arg, help="columns of a sheet")
    p.add_argument("--frames", type=int_arg, help="turntable frames")
    p.add_argument("--fps", type=int_arg, help="turntable frames per second")
    p.add_argument("--grid", type=int_arg, help="mesh: density grid size per axis (16..512)")
    p.add_argument("--threshold", type=float, help="mesh: density threshold of the surface (default 5)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.set_defaults(handler=run)


def _kind_and_path(args) -> tuple[str, Path]:
    from engine.exports import EXPORT_KINDS, kind_for

    out = args.out
    if args.format is None:
        if not out.suffix:
            raise UserError("give --format, or an --out file name with a suffix (.png, .gif, .mp4, .glb, …)")
        return kind_for(out), out
    if not out.suffix:
        out = out.with_name(out.name + EXPORT_KINDS[args.format].suffix)
    return args.format, out


def _options(args, kind: str) -> dict:
    options = {}
    for name, kinds in OPTIONS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if kind not in kinds:
            raise UserError(f"--{name} does not apply to a {kind} export (it is for {', '.join(kinds)})")
        options[name] = value
    return options


class _Bar:
    """progress(i, n) → a tqdm bar (created on the first call, when n is known)."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, i: int, n: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=n, desc=self.desc, unit=self.unit)
        self.bar.update(i - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args) -> int:
    from engine.avatar import Avatar
    from engine.decoder import load_decoder
    from engine.exports import MeshInfo, export
    from training.fit.stage2_run import decoder_folder

    kind, out = _kind_and_path(args)
    options = _options(args, kind)
    decoder = load_decoder(decoder_folder(args.decoder), args.device) if args.decoder is not None else None
    avatar = Avatar.load(args.avatar, decoder=decoder, device=args.device)
    bar = None
    if kind in ("sheet", "gif", "mp4"):
        bar = _Bar(kind, "view" if kind == "sheet" else "frame")
    elif kind in ("glb", "obj", "ply"):
        bar = _Bar("density grid", "chunk")
    if bar is not None:
        options["progress"] = bar
    try:
        result = export(avatar, out, kind, **options)
    finally:
        if bar is not None:
            bar.close()
    if isinstance(result, MeshInfo):
        print(f"wrote {result.path} ({result.vertices} vertices, {result.faces} faces)")
    else:
        print(f"wrote {result}")
    return 0
