"""The shared MLP decoder: triplane features + view direction → density and colour (Sec. 3.1).

Like the authors' decoder: the first 3/4 of the channels feed colour, the last 1/4 density; features and the
view direction get a small frequency encoding [x, sin(2^k x), cos(2^k x)]; density = trunc_exp(out) from a
Softplus MLP that also emits a geometry feature; colour is view-dependent (bias-free ReLU MLP, sigmoid).
Optionally (`colour_skip`, `colour_bias`) a direct path from three colour channels to the colour logits and
biases in the colour MLP, so that a frozen decoder keeps the whole RGB cube within reach.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine.config import ConfigError, ConfigMixin
from engine.errors import UserError
from engine.io import atomic_write, atomic_write_text

WEIGHTS_FILE = "decoder.safetensors"
CONFIG_FILE = "config.json"


class _TruncExp(torch.autograd.Function):
    """exp with a clamped gradient (instant-ngp's trick): large densities cannot blow up the update."""

    @staticmethod
    def forward(ctx, x):  # noqa: D401
        ctx.save_for_backward(x)
        return torch.exp(x.clamp(max=15.0))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def frequency_encode(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[..., D] → [..., D·(1 + 2F)]: x, then sin/cos of 2^k·x for k < F."""
    parts = [x]
    for k in range(frequencies):
        parts += [torch.sin(x * 2.0**k), torch.cos(x * 2.0**k)]
    return torch.cat(parts, -1)


@dataclass
class DecoderConfig(ConfigMixin):
    channels: int = 32
    """Triplane channels C (the first 3C/4 feed colour, the last C/4 density)."""
    hidden: int = 128
    """Width of both MLP branches."""
    geo_features: int = 128
    """Geometry feature passed from the density branch to the colour branch."""
    frequencies: int = 2
    """Frequency-encoding octaves for features and view direction."""
    view_dependent: bool = True
    """Feed the view direction to the colour branch."""
    aggregate: str = "mean"
    """How the three planes' features are combined: mean (authors), sum or concat."""
    density_bias: float = -1.0
    """Initial bias of the density output (negative: start mostly empty)."""
    colour_skip: float = 0.0
    """Gain of a direct path from the first three colour channels (the aggregated features) to the three colour
    logits, beside the MLP. With it a frozen decoder can still paint any colour of the RGB cube: the fit moves
    those channels within the [-1, 1] triplane box, i.e. each logit by up to ± the gain. 0 = no such path (every
    decoder made before it: theirs frozen in stage 2 could not paint blue, purple or yellow)."""
    colour_bias: bool = False
    """Biases in the colour MLP (the authors' colour MLP has none)."""

    PRESETS: ClassVar[dict] = {
        # both with the direct colour path: a frozen decoder that reaches the whole RGB cube (docs/decoder_reach.md)
        "tiny": {"channels": 16, "hidden": 64, "geo_features": 32, "colour_skip": 4.0, "colour_bias": True},
        "paper": {"channels": 32, "hidden": 128, "geo_features": 128, "colour_skip": 4.0, "colour_bias": True},
    }

    def validate(self) -> None:
        if self.channels < 4 or self.channels % 4:
            raise ConfigError(f"channels must be a positive multiple of 4 (got {self.channels})")
        if self.aggregate not in ("mean", "sum", "concat"):
            raise ConfigError(f"aggregate must be mean, sum or concat (got {self.aggregate!r})")
        if self.hidden < 1 or self.geo_features < 0 or self.frequencies < 0:
            raise ConfigError("hidden, geo_features and frequencies must be positive")
        if not self.colour_skip >= 0:
            raise ConfigError(f"colour_skip must be ≥ 0 (got {self.colour_skip})")

    @property
    def feature_dim(self) -> int:
        return self.channels * (3 if self.aggregate == "concat" else 1)


class TriplaneDecoder(nn.Module):
    """features [N, F] (+ directions [N, 3]) → (sigma [N], rgb [N, 3])."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        enc = 1 + 2 * config.frequencies
        self.density_in = config.feature_dim // 4
        self.colour_in = config.feature_dim - self.density_in
        self.density_net = nn.Sequential(
            nn.Linear(self.density_in * enc, config.hidden), nn.Softplus(),
            nn.Linear(config.hidden, 1 + config.geo_features),
        )
        with torch.no_grad():
            self.density_net[-1].bias[0] = config.density_bias
        colour_in = self.colour_in * enc + config.geo_features + (3 * enc if config.view_dependent else 0)
        bias = config.colour_bias
        self.colour_net = nn.Sequential(
            nn.Linear(colour_in, config.hidden, bias=bias), nn.ReLU(),
            nn.Linear(config.hidden, config.hidden, bias=bias), nn.ReLU(),
            nn.Linear(config.hidden, 3, bias=bias),
        )

    def density(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.density_net(frequency_encode(features[:, self.colour_in:], self.config.frequencies))
        return trunc_exp(out[:, 0]), out[:, 1:]

    def forward(self, features: torch.Tensor, directions: torch.Tensor | None = None):
        sigma, geo = self.density(features)
        parts = [frequency_encode(features[:, : self.colour_in], self.config.frequencies), geo]
        if self.config.view_dependent:
            if directions is None:
                raise ValueError("this decoder is view-dependent: pass the view directions")
            parts.append(frequency_encode(directions, self.config.frequencies))
        logits = self.colour_net(torch.cat(parts, -1))
        if self.config.colour_skip:
            logits = logits + self.config.colour_skip * features[:, :3]
        return sigma, torch.sigmoid(logits)


def decoder_hash(decoder: TriplaneDecoder) -> str:
    """A short content hash of config + weights: triplanes record it so mismatched pairs are refused."""
    h = hashlib.sha256(json.dumps(_hashed_config(decoder.config), sort_keys=True).encode())
    for name, tensor in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_ADDED_LATER = {"colour_skip": 0.0, "colour_bias": False}  # fields added after decoders shipped: at these values
# they are left out of the hash, so every decoder hashed before they existed keeps its hash (and its triplanes)


def _hashed_config(config: DecoderConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if not (k in _ADDED_LATER and v == _ADDED_LATER[k])}


def save_decoder(folder: Path, decoder: TriplaneDecoder) -> str:
    """Write `config.json` + `decoder.safetensors` (atomic); returns the decoder hash."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = decoder_hash(decoder)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in decoder.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"hash": digest}))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(decoder.config.to_dict(), indent=2) + "\n")
    return digest


def load_decoder(folder: Path, device: str | torch.device = "cpu") -> TriplaneDecoder:
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise UserError(f"{folder}: no decoder here (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    decoder = TriplaneDecoder(DecoderConfig.load(folder / CONFIG_FILE))
    try:
        decoder.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except RuntimeError as exc:
        raise UserError(f"{folder}: decoder weights do not match its config ({str(exc).splitlines()[0]})") from exc
    return decoder.to(device).eval()
