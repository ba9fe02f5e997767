"""Training side of the text → portrait model: a small pixel-space diffusion UNet conditioned on MiniLM hidden
states (train.py), LoRA finetuning (lora.py) and the colour-following measure (colours.py)."""
