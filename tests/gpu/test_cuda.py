"""CUDA checks (skipped without a GPU; run on a lent GPU machine): the shipped models give on the GPU what they
give on the CPU, a text-model training step runs under bf16 autocast, and the whole training chain (the smoke
recipe: synth → stage 1 with revisits → stage 2 → base → upsample → model) trains on the GPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "assets" / "portraits" / "astronaut.png"


def psnr(a: np.ndarray, b: np.ndarray, max_val: float = 1.0) -> float:
    """engine.metrics.psnr (dB) of two [H, W, C] images in [0, max_val]."""
    from engine.metrics import psnr as image_psnr

    return float(image_psnr(*(torch.as_tensor(np.asarray(x, np.float64)).permute(2, 0, 1) for x in (a, b)), max_val))


def test_avatar_pipeline_on_cuda_matches_cpu():
    from engine.pipeline import AvatarPipeline

    portrait = PORTRAIT  # as is: the device image's OpenCV lacks the Haar cascades
    avatars = {d: AvatarPipeline.from_pretrained(ROOT / "assets" / "models" / "default", device=d)(
        portrait, steps=10, seed=0) for d in ("cpu", "cuda")}
    cpu, gpu = avatars["cpu"], avatars["cuda"]
    assert gpu.planes.device.type == "cuda"
    rel = (gpu.planes.cpu().float() - cpu.planes.float()).norm() / cpu.planes.float().norm()
    assert rel < 0.02, float(rel)
    views = [a.render_view(30.0, 10.0, resolution=128) for a in (cpu, gpu)]  # float32 RGBA in [0, 1]
    assert psnr(views[0], views[1]) > 35.0


def test_text_pipeline_on_cuda_matches_cpu():
    from engine.text import TextPortraitPipeline

    folder = ROOT / "assets" / "models" / "text_default"
    prompt = "a woman with tan skin, long blonde hair, wearing a red hoodie"
    images = [np.asarray(TextPortraitPipeline.from_pretrained(folder, device=d)(prompt, n=1, steps=10, seed=3)[0],
                         np.float64) for d in ("cpu", "cuda")]
    assert np.abs(images[0] - images[1]).mean() < 2.0 and psnr(images[0], images[1], max_val=255.0) > 30.0


def test_text_training_step_on_cuda_bf16(tmp_path):
    from training.text.config import TextTrainConfig
    from training.text.dataset import CaptionCache, PortraitSet
    from training.text.train import train_text

    rng = np.random.default_rng(0)
    captions = [f"caption {i}" for i in range(6)]
    data = PortraitSet(rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8), captions, [f"x/{i}" for i in range(6)],
                       ["black"] * 6, ["red"] * 6, [{}] * 6)
    texts = sorted(set(captions) | {""})
    cache = CaptionCache(texts, torch.randn(len(texts), 77, 384).half(), torch.ones(len(texts), 77, dtype=torch.long),
                         {t: i for i, t in enumerate(texts)})
    config = TextTrainConfig.preset("test").replace(resolution=16, device="cuda", steps=6, checkpoint_every=3)
    info = train_text([], tmp_path / "run", config, log=lambda *_: None, data=data, captions_cache=cache)
    assert info["steps"] == 6 and np.isfinite(info["final_loss"])
    assert (tmp_path / "run" / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_smoke_recipe_trains_on_cuda(tmp_path):
    pytest.importorskip("moderngl")  # synth renders with GL
    from engine.pipeline import AvatarPipeline
    from training.cli.main import main
    from training.recipe import run_recipe

    state = run_recipe("smoke", tmp_path, device="cuda", with_text=False, runner=main, log=lambda *_: None)
    assert list(state["done"]) == ["synth", "stage1", "stage2", "base", "upsample", "build"]
    avatar = AvatarPipeline.from_pretrained(tmp_path / "model", device="cuda").unconditional(seed=0, steps=2)
    assert avatar.planes.device.type == "cuda" and torch.isfinite(avatar.planes.float()).all()
