"""Our own small portrait VAE (`rodinhd train --stage vae`): config presets and the run-folder training loop."""
from training.vae.config import VAEConfig
from training.vae.train import train_vae

__all__ = ["VAEConfig", "train_vae"]
