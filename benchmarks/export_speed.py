"""Seconds per export kind (engine.exports) for one avatar of a trained model, plus the mesh sizes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export_speed.py --model runs/model_tiny [--seed 0] [--grid 128]

The avatar is AvatarPipeline.from_pretrained(MODEL).unconditional(seed); every export uses its defaults (view
512 px, sheet 8 × 256 px, turntable 36 × 256 px, mesh grid 128) unless told otherwise. Also reports, per mesh
threshold, how well the mesh's silhouette matches the rendered one (the check behind MESH_DENSITY_THRESHOLD).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def silhouette_iou(avatar, thresholds: list[float], grid: int = 128) -> dict[float, tuple[float, float]]:
    """IoU of {σ > threshold anywhere along an axis} with {orthographic alpha > 0.5}, looking along z and x."""
    from engine.mesh import density_grid
    from engine.triplane import sample_triplane

    def density(points):
        return avatar.decoder.density(sample_triplane(avatar.planes, points, avatar.decoder.config.aggregate))[0]

    sigma = density_grid(density, grid)
    step = 2.0 / (grid - 1)
    out = {}
    for threshold in thresholds:
        ious = []
        for axis in (2, 0):
            rendered = 1.0 - np.exp(-sigma.sum(axis) * step) > 0.5
            mesh = (sigma > threshold).any(axis)
            ious.append(float((rendered & mesh).sum() / max((rendered | mesh).sum(), 1)))
        out[threshold] = (ious[0], ious[1])
    return out


def main() -> None:
    from engine.avatar import Avatar
    from engine.exports import export_mesh, export_sheet, export_triplane, export_turntable, export_view
    from engine.pipeline import AvatarPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (rodinhd model build)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=int, default=128, help="mesh grid")
    parser.add_argument("--keep", type=Path, help="keep the exported files in this folder")
    args = parser.parse_args()

    torch.set_num_threads(1)
    started = time.perf_counter()
    avatar = AvatarPipeline.from_pretrained(args.model).unconditional(seed=args.seed)
    print(f"avatar: triplane {list(avatar.planes.shape)}, generated in {time.perf_counter() - started:.1f} s "
          f"(torch threads: {torch.get_num_threads()})")
    out = args.keep or Path(tempfile.mkdtemp(prefix="export-bench-"))
    try:
        jobs = [
            ("safetensors", lambda: export_triplane(avatar, out / "avatar.safetensors")),
            ("png 512", lambda: export_view(avatar, out / "front.png")),
            ("png 512 transparent", lambda: export_view(avatar, out / "side.png", azimuth=60,
                                                        background="transparent")),
            ("sheet 8x256", lambda: export_sheet(avatar, out / "sheet.png")),
            ("gif 36x256", lambda: export_turntable(avatar, out / "turntable.gif")),
            ("mp4 36x256", lambda: export_turntable(avatar, out / "turntable.mp4")),
        ] + [(f"{fmt} grid {args.grid}", lambda fmt=fmt: export_mesh(avatar, out / f"mesh.{fmt}", grid=args.grid))
             for fmt in ("glb", "obj", "ply")]
        for name, job in jobs:
            started = time.perf_counter()
            result = job()
            elapsed = time.perf_counter() - started
            path = getattr(result, "path", result)
            extra = (f"  {result.vertices} vertices, {result.faces} faces" if hasattr(result, "vertices") else "")
            print(f"{name:<22} {elapsed:7.2f} s  {path.stat().st_size / 1024:8.0f} KiB{extra}")
        started = time.perf_counter()
        again = Avatar.load(out / "avatar.safetensors")
        print(f"{'Avatar.load':<22} {time.perf_counter() - started:7.2f} s  (planes equal after fp16: "
              f"{torch.equal(again.planes, avatar.planes.half().float())})")
        print("mesh threshold → silhouette IoU vs rendered alpha 0.5 (front, side):")
        for threshold, (front, side) in silhouette_iou(avatar, [0.5, 2.0, 5.0, 10.0, 20.0, 50.0]).items():
            print(f"  σ = {threshold:<5g} {front:.3f} {side:.3f}")
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
