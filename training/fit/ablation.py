"""`rodinhd fit-ablation`: naive sequential vs task replay vs task replay + IWC on the same data and step
budget (Table 4a), and the forgetting curves of the first avatars (Fig. 2)."""
from __future__ import annotations

import json
from pathlib import Path

from engine.io import atomic_write_json, atomic_write_text
from engine.metrics import PERCEPTUAL_NAME
from training.fit.config import FitConfig
from training.fit.stage1_run import run_stage1
from training.runs import RunStopped, read_metrics

MODES = ("naive", "replay", "replay_iwc")
LABELS = {"naive": "naive sequential", "replay": "+ task replay", "replay_iwc": "+ task replay + IWC"}


def run_ablation(data: Path, out: Path, config: FitConfig, limit: int | None, resume: bool) -> dict:
    results = {}
    for mode in MODES:
        run_dir = Path(out) / mode
        done = run_dir / "results.json"
        if resume and done.exists() and json.loads((run_dir / "status.json").read_text()).get("state") == "finished":
            results[mode] = json.loads(done.read_text())
            continue
        results[mode] = run_stage1(data, run_dir, config.replace(mode=mode), limit,
                                   resume=resume and run_dir.exists(), perceptual=True)
        if results[mode] is None:  # the run was stopped (SIGTERM / Ctrl+C): so is the ablation
            raise RunStopped(f"stopped during the {mode} run; continue with --resume")
    table = ablation_table(results, config)
    atomic_write_text(Path(out) / "ablation.md", table)
    atomic_write_json(Path(out) / "ablation.json", {m: r["mean"] for m, r in results.items()})
    plot_forgetting(Path(out), Path(out) / "forgetting.png", first=4)
    return results


def ablation_table(results: dict, config: FitConfig) -> str:
    steps = config.epochs * config.inner_steps
    lines = [
        f"| stage-1 schedule | PSNR ↑ | SSIM ↑ | {PERCEPTUAL_NAME} ↓ |",
        "|---|---|---|---|",
    ]
    for mode in MODES:
        m = results[mode]["mean"]
        lines.append(f"| {LABELS[mode]} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['perceptual']:.4f} |")
    avatars = len(results[MODES[0]]["per_avatar"])
    lines.append("")
    lines.append(f"{avatars} avatars, {steps} steps per avatar in every mode, held-out views "
                 f"({config.eval_views} per avatar), triplanes {config.channels}×{config.triplane_resolution}², "
                 f"IWC λ = {config.iwc_weight}.")
    return "\n".join(lines) + "\n"


def forgetting_series(run_dir: Path, avatar: str) -> tuple[list[int], list[float]]:
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if f"psnr/{avatar}" in r]
    return [r["step"] for r in rows], [r[f"psnr/{avatar}"] for r in rows]


def plot_forgetting(out: Path, png: Path, first: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    avatars = sorted(json.loads((out / MODES[0] / "results.json").read_text())["per_avatar"])[:first]
    fig, axes = plt.subplots(1, len(MODES), figsize=(4.2 * len(MODES), 3.4), sharey=True)
    for ax, mode in zip(axes, MODES):
        for avatar in avatars:
            steps, values = forgetting_series(out / mode, avatar)
            ax.plot(steps, values, marker=".", label=avatar)
        ax.set_title(LABELS[mode])
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out PSNR (dB)")
    axes[-1].legend(fontsize=7)
    fig.suptitle("Forgetting: PSNR of the first avatars while stage 1 goes on (cf. paper Fig. 2)")
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)
