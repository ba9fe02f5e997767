"""`rodinhd plot schedules`: logSNR(t) and ᾱ(t) of the four noise schedules (RodinHD Fig. 6 style) as a PNG."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError
from training.cli.common import int_arg


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help="diagnostic plots (noise schedules)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("what", choices=("schedules",), help="what to plot")
    p.add_argument("--out", type=Path, required=True, help="output .png file")
    p.add_argument("--timesteps", type=int_arg, default=1000, help="discrete timesteps T the curves are drawn at")
    p.set_defaults(handler=run)


def schedule_figure(timesteps: int):
    """Two panels over the interior timesteps t = i/T (logSNR is ±∞ at the ends): logSNR(t) and ᾱ(t)."""
    import torch
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    from engine.diffusion.schedules import SCHEDULE_NAMES, ScheduleConfig, alpha_bar, describe, log_snr

    t = torch.arange(1, timesteps, dtype=torch.float64) / timesteps
    fig = Figure(figsize=(10, 4), layout="constrained")
    snr_axes, alpha_axes = fig.subplots(1, 2)
    for name in SCHEDULE_NAMES:
        config = ScheduleConfig(name=name, timesteps=timesteps)
        snr_axes.plot(t.numpy(), log_snr(t, config).numpy(), label=describe(config))
        alpha_axes.plot(t.numpy(), alpha_bar(t, config).numpy(), label=describe(config))
    snr_axes.set(xlabel="t", ylabel="logSNR(t)", title="log signal-to-noise ratio")
    alpha_axes.set(xlabel="t", ylabel="ᾱ(t)", title="signal level ᾱ(t)", ylim=(0, 1.02))
    for axes in (snr_axes, alpha_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return fig


def run(args) -> int:
    from engine.io import atomic_write

    if args.timesteps < 2:
        raise UserError(f"--timesteps must be ≥ 2 (got {args.timesteps})")
    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out must be a .png file (got {args.out})")
    fig = schedule_figure(args.timesteps)
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    print(args.out)
    return 0
