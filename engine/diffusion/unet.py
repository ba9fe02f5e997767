"""The triplane U-Net shared by the base and the upsample diffusion models (RodinHD §3.3–3.4, Rodin §3.2).

It denoises a rolled-out triplane `x [B, C, R, 3R]` (see `rollout.py`) at diffusion time `t`, conditioned on a
portrait: multi-scale portrait tokens enter through cross-attention, the global portrait token is added to the
time embedding (as the authors add their pooled portrait embedding). The upsampler also sees the upsampled
low-resolution triplane, concatenated to its input.

Layout choices (documented in the config too): every spatial convolution pads each plane separately
(`plane_padding`), so the only ways information crosses planes are the 3D-aware convolutions and attention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.config import ConfigError, ConfigMixin
from engine.diffusion.blocks import (Aware3DConv, Context, CrossAttentionBlock, PlaneConv2d, PortraitTokenizer,
                                     SelfAttentionBlock, norm_groups, planewise, zero_init_)

CrossAttention = Literal["encoder_decoder", "middle", "none"]
_PORTRAIT_TINY = {"context_dim": 128, "portrait_channels": (16, 24, 32), "portrait_sizes": (64, 32, 16),
                  "portrait_global_dim": 1280}  # a 128² MobileNetV2 pyramid
_PORTRAIT_PAPER = {"context_dim": 512, "portrait_channels": (128, 256, 512), "portrait_sizes": (64, 32, 16),
                   "portrait_global_dim": 512}


@dataclass
class TriplaneUNetConfig(ConfigMixin):
    channels: int = 16
    """Triplane feature channels C."""
    resolution: int = 32
    """Triplane resolution R (the input is [B, C, R, 3R]); must be divisible by 2^(levels − 1)."""
    lowres_channels: int = 0
    """Upsampler only: channels of the upsampled low-res triplane concatenated to the input (0: base model)."""
    learned_variance: bool = True
    """Predict a variance interpolation too: 2C output channels (ε and v) instead of C."""
    model_channels: int = 64
    """Width of the first level; level l has model_channels · channel_mult[l]."""
    channel_mult: tuple[int, ...] = (1, 2, 2)
    """Width multipliers per level; each level but the last halves the resolution."""
    num_res_blocks: int = 1
    """ResNet blocks per level on the way down (the way up has one more, for the extra skip)."""
    attention_levels: tuple[int, ...] = (2,)
    """Levels with self-attention after each ResNet block; the middle block has it iff the last level does."""
    cross_attention: CrossAttention = "encoder_decoder"
    """Portrait cross-attention: at `cross_attention_levels` down and up plus the middle, the middle only, or none."""
    cross_attention_levels: tuple[int, ...] = (0, 1, 2)
    """Levels with cross-attention ("encoder_decoder" only). The i-th of them (sorted) uses portrait scale min(i, 2)."""
    head_dim: int = 32
    """Channels per attention head."""
    dropout: float = 0.0
    """Dropout inside the ResNet blocks."""
    aware3d_levels: tuple[int, ...] = (0,)
    """Levels whose ResNet blocks (down and up) use a 3D-aware convolution as their first conv."""
    context_dim: int = 128
    """Width of the portrait tokens."""
    tokens_per_side: int = 4
    """Each portrait scale becomes tokens_per_side² tokens."""
    portrait_channels: tuple[int, ...] = (16, 24, 32)
    """Channels of the portrait features y1, y2, y3 (finest first)."""
    portrait_sizes: tuple[int, ...] = (64, 32, 16)
    """Spatial sizes of y1, y2, y3."""
    portrait_global_dim: int = 1280
    """Width of the global portrait vector."""
    plane_padding: bool = True
    """Pad every plane separately in all 3×3 convs (False: convolve across the seams like the authors' code)."""

    PRESETS: ClassVar[dict] = {
        "base_tiny": {"channels": 16, "resolution": 32, "model_channels": 64, "channel_mult": (1, 2, 2),
                      "num_res_blocks": 1, "attention_levels": (2,), "cross_attention": "encoder_decoder",
                      "cross_attention_levels": (0, 1, 2), "head_dim": 32, "learned_variance": True,
                      "aware3d_levels": (0,), **_PORTRAIT_TINY},
        "upsample_tiny": {"channels": 16, "resolution": 128, "lowres_channels": 16, "model_channels": 16,
                          "channel_mult": (1, 2, 4), "num_res_blocks": 1, "attention_levels": (),
                          "cross_attention": "middle", "cross_attention_levels": (), "head_dim": 32,
                          "learned_variance": False, "aware3d_levels": (0,), **_PORTRAIT_TINY},
        "base_paper": {"channels": 32, "resolution": 128, "model_channels": 192, "channel_mult": (1, 1, 2, 3, 4),
                       "num_res_blocks": 3, "attention_levels": (2, 3, 4), "cross_attention": "encoder_decoder",
                       "cross_attention_levels": (2, 3, 4), "head_dim": 64, "dropout": 0.1,
                       "learned_variance": True, "aware3d_levels": (0,), **_PORTRAIT_PAPER},
        "upsample_paper": {"channels": 32, "resolution": 512, "lowres_channels": 32, "model_channels": 64,
                           "channel_mult": (1, 2, 4), "num_res_blocks": 2, "attention_levels": (),
                           "cross_attention": "middle", "cross_attention_levels": (), "head_dim": 64,
                           "learned_variance": False, "aware3d_levels": (0,), **_PORTRAIT_PAPER},
    }

    @property
    def in_channels(self) -> int:
        return self.channels + self.lowres_channels

    @property
    def out_channels(self) -> int:
        return 2 * self.channels if self.learned_variance else self.channels

    @property
    def middle_self_attention(self) -> bool:
        return len(self.channel_mult) - 1 in self.attention_levels

    def validate(self) -> None:
        levels = len(self.channel_mult)
        positive = {"channels": self.channels, "resolution": self.resolution, "model_channels": self.model_channels,
                    "num_res_blocks": self.num_res_blocks, "head_dim": self.head_dim,
                    "context_dim": self.context_dim, "tokens_per_side": self.tokens_per_side,
                    "portrait_global_dim": self.portrait_global_dim}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be positive (got {value})")
        if self.lowres_channels < 0:
            raise ConfigError(f"lowres_channels must be ≥ 0 (got {self.lowres_channels})")
        if levels == 0 or min(self.channel_mult) < 1:
            raise ConfigError(f"channel_mult must be a non-empty tuple of positive ints (got {self.channel_mult})")
        if self.resolution % 2 ** (levels - 1):
            raise ConfigError(f"resolution {self.resolution} must be divisible by 2^{levels - 1} for {levels} levels")
        for name in ("attention_levels", "cross_attention_levels", "aware3d_levels"):
            bad = [lvl for lvl in getattr(self, name) if not 0 <= lvl < levels]
            if bad:
                raise ConfigError(f"{name} {bad} out of range: levels are 0 … {levels - 1}")
        self._validate_attention()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1) (got {self.dropout})")
        if len(self.portrait_channels) != 3 or len(self.portrait_sizes) != 3:
            raise ConfigError("portrait_channels and portrait_sizes need exactly three scales (y1, y2, y3)")
        if any(s % self.tokens_per_side for s in self.portrait_sizes):
            raise ConfigError(f"portrait_sizes {self.portrait_sizes} must be multiples of tokens_per_side")

    def _validate_attention(self) -> None:
        if self.cross_attention not in ("encoder_decoder", "middle", "none"):
            raise ConfigError(f"cross_attention must be encoder_decoder, middle or none (got {self.cross_attention!r})")
        if self.cross_attention != "encoder_decoder" and self.cross_attention_levels:
            raise ConfigError(f"cross_attention_levels must be empty with cross_attention={self.cross_attention!r}")
        attended = set(self.attention_levels) | set(self.cross_attention_levels)
        widths = {self.model_channels * self.channel_mult[lvl] for lvl in attended}
        if self.middle_self_attention or self.cross_attention != "none":
            widths.add(self.model_channels * self.channel_mult[-1])
        bad = sorted(w for w in widths if w % self.head_dim)
        if bad:
            raise ConfigError(f"head_dim {self.head_dim} must divide the attended widths (not {bad})")


class _LevelBlock(nn.Module):
    """ResNet block (with time embedding), then optional self-attention, then optional cross-attention.

    `scale` picks the portrait tokens for the cross-attention: a scale index, or None for all scales (middle).
    """

    def __init__(self, res: ResnetBlock2D, attn: SelfAttentionBlock | None, cross: CrossAttentionBlock | None,
                 scale: int | None = None) -> None:
        super().__init__()
        self.res, self.attn, self.cross, self.scale = res, attn, cross, scale

    def forward(self, h: torch.Tensor, temb: torch.Tensor, context: Context) -> torch.Tensor:
        h = self.res(h, temb)
        if self.attn is not None:
            h = self.attn(h)
        if self.cross is not None:
            tokens = context.all_tokens() if self.scale is None else context.for_scale(self.scale)
            h = self.cross(h, tokens)
        return h


class TriplaneUNet(nn.Module):
    """ε/x0-prediction U-Net on a rolled-out triplane: x [B, C (+ lowres C), R, 3R] → [B, out_channels, R, 3R]."""

    def __init__(self, config: TriplaneUNetConfig) -> None:
        super().__init__()
        config.validate()
        self.config = cfg = config
        self.gradient_checkpointing = False
        mc, temb_dim = cfg.model_channels, 4 * cfg.model_channels
        self.time_proj = Timesteps(mc, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(mc, temb_dim)
        self.tokenizer = PortraitTokenizer(cfg.portrait_channels, cfg.portrait_sizes, cfg.portrait_global_dim,
                                           cfg.context_dim, cfg.tokens_per_side)
        self.global_to_temb = nn.Linear(cfg.context_dim, temb_dim)
        self.cross_scale = {lvl: min(i, 2) for i, lvl in enumerate(sorted(set(cfg.cross_attention_levels)))}
        self.conv_in = self._conv(cfg.in_channels, mc)
        skips = self._build_down()
        self._build_middle()
        self._build_up(skips)
        self.conv_out = nn.Sequential(nn.GroupNorm(norm_groups(mc), mc, eps=1e-6), nn.SiLU(),
                                      self._conv(mc, cfg.out_channels))
        zero_init_(self.conv_out[-1])  # a fresh model predicts 0, a calm start for ε or x0 regression

    # ---- construction -------------------------------------------------------------------------------------
    def _conv(self, in_ch: int, out_ch: int) -> nn.Conv2d:
        kind = PlaneConv2d if self.config.plane_padding else nn.Conv2d
        return kind(in_ch, out_ch, kernel_size=3, padding=1)

    def _res_block(self, level: int | None, in_ch: int, out_ch: int) -> ResnetBlock2D:
        """diffusers' ResNet block with scale-shift time conditioning (as the authors); at `aware3d_levels` its
        first conv is replaced by an Aware3DConv (same in/out channels), so each plane sees the other two."""
        cfg = self.config
        res = ResnetBlock2D(in_channels=in_ch, out_channels=out_ch, temb_channels=4 * cfg.model_channels,
                            dropout=cfg.dropout, groups=norm_groups(in_ch), groups_out=norm_groups(out_ch),
                            eps=1e-6, time_embedding_norm="scale_shift")
        if cfg.plane_padding:
            planewise(res)
        if level in cfg.aware3d_levels:
            res.conv1 = Aware3DConv(in_ch, out_ch)
        zero_init_(res.conv2)  # residual branch starts as identity (guided-diffusion practice)
        return res

    def _level_block(self, level: int, in_ch: int, out_ch: int) -> _LevelBlock:
        cfg = self.config
        attn = SelfAttentionBlock(out_ch, cfg.head_dim) if level in cfg.attention_levels else None
        cross = None
        if cfg.cross_attention == "encoder_decoder" and level in self.cross_scale:
            cross = CrossAttentionBlock(out_ch, cfg.head_dim, cfg.context_dim)
        return _LevelBlock(self._res_block(level, in_ch, out_ch), attn, cross, self.cross_scale.get(level))

    def _build_down(self) -> list[int]:
        """Down path; returns the channel count of every skip connection, in push order."""
        cfg, ch = self.config, self.config.model_channels
        skips = [ch]
        self.down_blocks = nn.ModuleList()  # _LevelBlock or Downsample2D; every output is pushed as a skip
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down_blocks.append(self._level_block(level, ch, mult * cfg.model_channels))
                ch = mult * cfg.model_channels
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down_blocks.append(self._resample(Downsample2D(ch, use_conv=True, padding=1, name="op")))
                skips.append(ch)
        return skips

    def _build_middle(self) -> None:
        cfg = self.config
        ch = cfg.model_channels * cfg.channel_mult[-1]
        attn = SelfAttentionBlock(ch, cfg.head_dim) if cfg.middle_self_attention else None
        cross = CrossAttentionBlock(ch, cfg.head_dim, cfg.context_dim) if cfg.cross_attention != "none" else None
        self.middle = nn.ModuleList([_LevelBlock(self._res_block(None, ch, ch), attn, cross, scale=None),
                                     _LevelBlock(self._res_block(None, ch, ch), None, None)])

    def _build_up(self, skips: list[int]) -> None:
        cfg = self.config
        ch = cfg.model_channels * cfg.channel_mult[-1]
        self.up_blocks = nn.ModuleList()  # _LevelBlock (eats one skip) or Upsample2D
        for level in reversed(range(len(cfg.channel_mult))):
            out_ch = cfg.model_channels * cfg.channel_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                self.up_blocks.append(self._level_block(level, ch + skips.pop(), out_ch))
                ch = out_ch
            if level > 0:
                self.up_blocks.append(self._resample(Upsample2D(ch, use_conv=True)))

    def _resample(self, module: nn.Module) -> nn.Module:
        return planewise(module) if self.config.plane_padding else module

    # ---- forward ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, portrait: dict[str, torch.Tensor] | None = None,
                drop: torch.Tensor | None = None, lowres: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, R, 3R], timesteps [B] (int or float), portrait features dict or None (unconditional),
        drop bool [B] (True: that sample gets the null condition), lowres [B, C_lr, R, 3R] (upsampler only)."""
        x = self._check_inputs(x, lowres)
        b = x.shape[0]
        timesteps = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(b)
        context = self.tokenizer(portrait, drop, batch_size=b)
        temb = self.time_embedding(self.time_proj(timesteps).to(x.dtype))
        temb = temb + self.global_to_temb(context.global_token)
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h = self._run(block, h, temb, context)
            skips.append(h)
        for block in self.middle:
            h = self._run(block, h, temb, context)
        for block in self.up_blocks:
            if isinstance(block, _LevelBlock):
                h = torch.cat([h, skips.pop()], 1)
            h = self._run(block, h, temb, context)
        return self.conv_out(h)

    def _check_inputs(self, x: torch.Tensor, lowres: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.channels or x.shape[-1] != 3 * x.shape[-2]:
            raise ValueError(f"x must be a rolled-out triplane [B, {cfg.channels}, R, 3R], got {list(x.shape)}")
        if x.shape[-2] % 2 ** (len(cfg.channel_mult) - 1):
            raise ValueError(f"R = {x.shape[-2]} must be divisible by 2^{len(cfg.channel_mult) - 1}")
        if cfg.lowres_channels == 0:
            if lowres is not None:
                raise ValueError("this is a base model (lowres_channels = 0): it takes no lowres triplane")
            return x
        expected = [x.shape[0], cfg.lowres_channels, *x.shape[2:]]
        if lowres is None or list(lowres.shape) != expected:
            got = None if lowres is None else list(lowres.shape)
            raise ValueError(f"the upsampler needs lowres {expected} (the upsampled low-res triplane), got {got}")
        return torch.cat([x, lowres.to(x.dtype)], 1)

    def _run(self, block: nn.Module, h: torch.Tensor, temb: torch.Tensor, context: Context) -> torch.Tensor:
        """Apply one block, recomputing it in the backward pass when gradient checkpointing is on."""
        args = (h, temb, context) if isinstance(block, _LevelBlock) else (h,)
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
