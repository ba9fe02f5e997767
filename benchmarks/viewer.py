"""Speed and fidelity of the GL viewer's renderer (engine.render.gl) against the torch renderer, on this machine.

Prints, for one avatar seen from an orbit camera:
  - set_avatar: the exact shader's compile (the driver's link, plus the code generation llvmpipe and other drivers
    defer to the first draw: the difference between a first and a cached set_avatar), the upload, the bake of the
    fast path's volume, and the occupancy grid when it is computed from the density;
  - exact-path and fast-path frame times (median of N frames after a warm-up frame, ctx.finish() inside the
    timing) at 256² and 512²;
  - the baseline: engine.render.render_image for the same 256² frame (RenderConfig(samples=64), same occupancy),
    and its ratio to the exact path (median of up to 3 frames);
  - fidelity at 256²: GL-exact vs torch PSNR and max abs diff (RGBA), GL-fast vs torch PSNR.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/viewer.py [--model runs/model_tiny] [--frames 5] [--bake 64]

Without --model the avatar is a deterministic synthetic one (a smooth head-sized blob, tiny decoder). Mesa's
on-disk shader cache is turned off so the compile time is a cold one (--shader-cache keeps it).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from engine.avatar import orbit_camera
from engine.cameras import DEFAULT_FOV_DEGREES
from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.render import RenderConfig, density_occupancy, render_image

AZIMUTH, ELEVATION = 30.0, 10.0


def synthetic_avatar(seed: int = 0, resolution: int = 64) -> tuple[torch.Tensor, TriplaneDecoder]:
    """A blob: on every plane the first density channel is 0.5 − 1.5(u² + v²), so its mean over the planes is
    0.5 − |p|² (positive inside radius 0.71); colour channels are smooth noise. The tiny decoder's density head
    is set by hand to σ = exp(2·softplus(8·that) − 3): ~150 at the centre, under the occupancy threshold
    outside."""
    torch.manual_seed(seed)
    decoder = TriplaneDecoder(DecoderConfig.preset("tiny")).eval()
    channels = decoder.config.channels
    coarse = torch.rand(3, channels, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    planes = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=True).clamp(-1, 1)
    ramp = torch.linspace(-1.0, 1.0, resolution)
    planes[:, decoder.colour_in] = 0.5 - 1.5 * (ramp[None, :] ** 2 + ramp[:, None] ** 2)
    with torch.no_grad():
        first, second = decoder.density_net[0], decoder.density_net[2]
        first.weight[0].zero_()
        first.weight[0, 0] = 8.0  # encoding input 0 is the raw first density feature
        first.bias[0] = 0.0
        second.weight[0].zero_()
        second.weight[0, 0] = 2.0
        second.bias[0] = -3.0
    return planes, decoder


def model_avatar(folder: str) -> tuple[torch.Tensor, TriplaneDecoder]:
    from engine.pipeline import AvatarPipeline

    avatar = AvatarPipeline.from_pretrained(folder).unconditional(seed=0, steps=10)
    return avatar.planes, avatar.decoder


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def frame_time(renderer, ctx, c2w, size: int, mode: str, frames: int) -> float:
    target = ctx.framebuffer(color_attachments=[ctx.texture((size, size), 4, dtype="f4")])

    def frame():
        renderer.render(c2w, size, size, mode=mode, framebuffer=target)
        ctx.finish()

    frame()  # warm-up: drivers may finish compiling on first use
    median = statistics.median(timed(frame) for _ in range(frames))
    target.release()
    return median


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10.0 * np.log10(max(float(np.mean((a - b) ** 2)), 1e-20)))


def report_set_avatar(renderer, ctx, planes, decoder, occupancy, bake: int) -> None:
    def set_avatar():
        renderer.set_avatar(planes, decoder, occupancy, bake)
        ctx.finish()

    first = timed(set_avatar)
    link = renderer.timings["compile_s"]
    cached = timed(set_avatar)
    print(f"set_avatar: first {first:.2f} s, again with the cached program {cached:.2f} s (link {link:.2f} s, "
          f"upload {renderer.timings['upload_s'] * 1e3:.1f} ms, bake {bake}³ {renderer.timings['bake_s']:.2f} s)")
    print(f"shader compile (link + first-draw code generation): {first - cached:.2f} s")


def torch_frame(planes, decoder, c2w, occupancy, frames: int) -> tuple[float, np.ndarray]:
    """Median seconds of render_image for a 256² frame, and that frame as RGBA [256, 256, 4]."""
    config = RenderConfig(samples=64, importance=0)
    camera = torch.as_tensor(c2w, dtype=torch.float32)
    outputs = []

    def frame():
        outputs.append(render_image(planes, decoder, camera, math.radians(DEFAULT_FOV_DEGREES), 256, 256, config,
                                    occupancy))

    seconds = statistics.median(timed(frame) for _ in range(frames))
    out = outputs[-1]
    return seconds, torch.cat([out.rgb, out.alpha[..., None]], -1).clamp(0, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an AvatarPipeline model folder (default: a synthetic avatar)")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per figure (median)")
    parser.add_argument("--bake", type=int, default=64, help="fast-path volume resolution")
    parser.add_argument("--shader-cache", action="store_true", help="keep Mesa's on-disk shader cache on")
    args = parser.parse_args()
    if not args.shader_cache:
        os.environ["MESA_SHADER_CACHE_DISABLE"] = "true"  # read when the context is made
    torch.set_num_threads(1)

    from engine.render.gl import TriplaneGLRenderer, standalone_context

    planes, decoder = model_avatar(args.model) if args.model else synthetic_avatar()
    print(f"avatar: {args.model or 'synthetic blob'}, planes {list(planes.shape)}, "
          f"decoder {decoder.config.to_dict()}")
    start = time.perf_counter()
    occupancy = density_occupancy(planes, decoder, samples_per_cell=2)
    print(f"occupancy grid (torch, from the density): {time.perf_counter() - start:.2f} s, "
          f"{occupancy.fraction:.1%} occupied")

    ctx = standalone_context()
    print(f"GL: {ctx.info['GL_RENDERER']} ({ctx.info['GL_VERSION']})")
    renderer = TriplaneGLRenderer(ctx)
    report_set_avatar(renderer, ctx, planes, decoder, occupancy, args.bake)

    c2w = orbit_camera(AZIMUTH, ELEVATION)
    times = {(mode, size): frame_time(renderer, ctx, c2w, size, mode, args.frames)
             for size in (256, 512) for mode in ("exact", "fast")}
    for (mode, size), seconds in times.items():
        print(f"GL {mode:5s} {size}²: {seconds * 1e3:8.1f} ms/frame (median of {args.frames})")

    torch_frames = min(args.frames, 3)
    torch_s, reference = torch_frame(planes, decoder, c2w, occupancy, torch_frames)
    print(f"torch render_image 256² (baseline, {torch.get_num_threads()} thread): {torch_s * 1e3:.1f} ms/frame "
          f"(median of {torch_frames}); GL exact is {torch_s / times['exact', 256]:.1f}× faster, "
          f"GL fast {torch_s / times['fast', 256]:.1f}×")

    exact = renderer.render_array(c2w, 256, 256, mode="exact")
    fast = renderer.render_array(c2w, 256, 256, mode="fast")
    print(f"GL exact vs torch 256² RGBA: PSNR {psnr(exact, reference):.1f} dB, "
          f"max abs diff {np.abs(exact - reference).max():.2e}")
    print(f"GL fast  vs torch 256² RGBA: PSNR {psnr(fast, reference):.1f} dB")
    renderer.release()


if __name__ == "__main__":
    main()
