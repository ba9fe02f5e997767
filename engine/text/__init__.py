"""Text → portrait front end (paper Sec. 4.5): MiniLM prompt encoder, a small pixel-space diffusion UNet (or a
local Stable Diffusion folder) and LoRA adapters. Heavy imports (diffusers, transformers) happen on first use."""
from __future__ import annotations

from engine.text.encoder import DEFAULT_MAX_TOKENS, ENCODER_NAME, HIDDEN_SIZE, TextEncoder
from engine.text.pipeline import (DEFAULT_GUIDANCE, DEFAULT_N, DEFAULT_STEPS, PromptTruncated, TextPortraitPipeline,
                                  TextProgress, build_tiny_text_pipeline)

__all__ = ["TextEncoder", "TextPortraitPipeline", "TextProgress", "PromptTruncated", "build_tiny_text_pipeline",
           "ENCODER_NAME", "HIDDEN_SIZE", "DEFAULT_MAX_TOKENS", "DEFAULT_N", "DEFAULT_STEPS", "DEFAULT_GUIDANCE"]
