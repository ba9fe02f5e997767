"""Speed and memory of one diffusion training step (forward + backward + AdamW) and one sampling forward, per stage.

Baseline, measured in the same run: the same step with the authors' across-the-seams convolutions
(`plane_padding=False`) — ours pads each plane separately so planes talk only through 3D-aware convs and attention.

    .venv/bin/python benchmarks/diffusion_step.py [--batch 2] [--paper]

`--paper` builds the paper presets (base: 192 channels, mult 1-1-2-3-4 on 32×128² triplanes; upsampler to 512²)
and runs one step of each, printing time and peak memory (a GPU is the place for it; it runs on a CPU, slowly).
On a 24 GB CPU machine the paper upsampler's step needs `--checkpointing` (without it: killed, out of memory).
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from engine.diffusion.model import DiffusionStage, stage_config


def portrait_features(unet, batch: int) -> dict[str, torch.Tensor]:
    feats = {f"y{i + 1}": torch.randn(batch, c, s, s) for i, (c, s) in
             enumerate(zip(unet.portrait_channels, unet.portrait_sizes))}
    feats["global"] = torch.randn(batch, unet.portrait_global_dim)
    return feats


def one_step(role: str, preset: str, batch: int, device: str, plane_padding: bool = True,
             checkpointing: bool = False) -> dict[str, float]:
    config = stage_config(role, preset)
    config = config.replace(unet=config.unet.replace(plane_padding=plane_padding))
    stage = DiffusionStage(config).to(device)
    stage.unet.gradient_checkpointing = checkpointing  # recompute activations in backward: less memory
    size, c = config.resolution, config.channels
    x0 = torch.randn(batch, c, size, 3 * size, device=device)
    t = torch.randint(stage.diffusion.num_timesteps, (batch,), device=device)
    feats = {k: v.to(device) for k, v in portrait_features(config.unet, batch).items()}
    lowres = torch.randn_like(x0) if role == "upsample" else None
    optimizer = torch.optim.AdamW(stage.parameters(), lr=1e-5)
    started = time.perf_counter()
    noise = torch.randn_like(x0)
    out = stage(stage.diffusion.q_sample(x0, t, noise), t, feats, lowres=lowres)
    loss = stage.diffusion.training_losses(out, x0, x0, t, noise, config.prediction_type,
                                           stage.learned_variance)["loss"].mean()
    loss.backward()
    optimizer.step()
    train_s = time.perf_counter() - started
    with torch.no_grad():
        started = time.perf_counter()
        stage(x0[:1], t[:1], {k: v[:1] for k, v in feats.items()},
              lowres=lowres[:1] if lowres is not None else None)
        sample_s = time.perf_counter() - started
    params = sum(p.numel() for p in stage.parameters())
    return {"params_M": params / 1e6, "train_step_s": train_s, "sample_forward_s": sample_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--paper", action="store_true")
    parser.add_argument("--roles", nargs="+", default=["base", "upsample"], choices=("base", "upsample"))
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in the paper steps")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch}")
    for role in args.roles:
        ours = one_step(role, "tiny", args.batch, args.device)
        seams = one_step(role, "tiny", args.batch, args.device, plane_padding=False)
        ratio = ours["train_step_s"] / seams["train_step_s"]
        print(f"tiny {role:8s}: {ours['params_M']:.2f} M params; train step {ours['train_step_s']:.3f} s "
              f"(across-seams baseline {seams['train_step_s']:.3f} s, ratio {ratio:.2f}); "
              f"sampling forward {ours['sample_forward_s']:.3f} s")
    if args.paper:
        for role in args.roles:
            result = one_step(role, "paper", 1, args.device, checkpointing=args.checkpointing)
            peak = (torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda")
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
            print(f"paper {role:8s}: {result['params_M']:.1f} M params; train step (batch 1) "
                  f"{result['train_step_s']:.2f} s; sampling forward {result['sample_forward_s']:.2f} s; "
                  f"peak memory {peak:.1f} GiB")


if __name__ == "__main__":
    main()
