"""`rodinhd render`: images of a fitted (or generated) triplane with its decoder — orbit views or a turntable.

The triplane is a plain triplane file (then --decoder is needed), or an avatar: a folder holding avatar.safetensors,
or a self-contained avatar file (these carry their decoder; --decoder is then optional and, if given, checked).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from engine.errors import UserError
from training.cli.common import int_arg


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render", help="render a triplane with its decoder (views on an orbit, or a turntable GIF/MP4)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("triplane", type=Path,
                   help="triplane .safetensors file, avatar folder or self-contained avatar file")
    p.add_argument("--decoder", type=Path,
                   help="decoder folder, model folder or fit run folder holding decoder/ (needed for plain "
                        "triplanes and avatars saved before avatars held their decoder)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--views", type=int_arg, default=8, help="views on the orbit spiral (view 0 frontal)")
    group.add_argument("--turntable", type=int_arg, help="frames of a 360° turntable at --elevation")
    p.add_argument("--elevation", type=float, default=10.0, help="turntable elevation in degrees")
    p.add_argument("--resolution", type=int_arg, default=256, help="image size in pixels")
    p.add_argument("--background", choices=("white", "transparent"), default="white", help="image background")
    p.add_argument("--samples", type=int_arg, default=64, help="samples per ray")
    p.add_argument("--format", choices=("png", "gif", "mp4"), default="png",
                   help="turntable container (png writes numbered frames)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.set_defaults(handler=run)


def cameras(args) -> list[np.ndarray]:
    from engine.cameras import DEFAULT_ORBIT, look_at, orbit_position, orbit_views

    target = np.asarray(DEFAULT_ORBIT.target)
    if args.turntable:
        angles = [(360.0 * i / args.turntable, args.elevation) for i in range(args.turntable)]
    else:
        angles = orbit_views(DEFAULT_ORBIT, args.views)
    return [look_at(orbit_position(az, el, DEFAULT_ORBIT.radius, target), target) for az, el in angles]


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from engine.avatar import TRIPLANE_FILE, Avatar
    from engine.cameras import DEFAULT_FOV_DEGREES
    from engine.decoder import decoder_hash, load_decoder
    from engine.frames import write_frames
    from engine.render import RenderConfig, density_occupancy, render_image
    from engine.triplane import load_triplane
    from training.fit.stage2_run import decoder_folder

    if not 16 <= args.resolution <= 2048:
        raise UserError(f"--resolution must be between 16 and 2048 (got {args.resolution})")
    source = args.triplane / TRIPLANE_FILE if args.triplane.is_dir() else args.triplane
    if args.decoder is not None:
        decoder = load_decoder(decoder_folder(args.decoder), args.device)
        planes, meta = load_triplane(source, decoder_hash(decoder), args.device)
    else:  # an avatar that carries its decoder
        avatar = Avatar.load(args.triplane, device=args.device)
        planes, decoder = avatar.planes, avatar.decoder
        meta = {"decoder_hash": decoder_hash(decoder), "extra": avatar.metadata}
    if planes.shape[1] != decoder.config.channels:
        raise UserError(f"{args.triplane}: {planes.shape[1]} channels, but the decoder expects "
                        f"{decoder.config.channels}")
    config = RenderConfig(samples=args.samples, background=args.background)
    occupancy = density_occupancy(planes, decoder, samples_per_cell=2)
    frames = []
    for c2w in tqdm(cameras(args), unit="view", desc="render"):
        out = render_image(planes, decoder, torch.tensor(c2w, dtype=torch.float32, device=args.device),
                           math.radians(DEFAULT_FOV_DEGREES), args.resolution, args.resolution, config, occupancy)
        rgba = torch.cat([out.rgb, out.alpha[..., None]], -1).clamp(0, 1).cpu().numpy()
        frames.append(rgba)
    written = write_frames(args.out, frames, args.format if args.turntable else "png", args.background,
                           {"triplane": str(args.triplane), "decoder_hash": decoder_hash(decoder),
                            "views": len(frames), "resolution": args.resolution, "triplane_meta": meta})
    print(f"wrote {written}")
    return 0
