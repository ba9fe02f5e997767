"""Configuration of triplane fitting (stage 1 and stage 2) with the `tiny` (CPU) and `paper` presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from engine.config import ConfigError, ConfigMixin
from engine.decoder import DecoderConfig
from engine.render import RenderConfig


@dataclass
class FitConfig(ConfigMixin):
    """Every weight and size of the fitting, written to the run's config.json."""

    triplane_resolution: int = 128
    """R of the [3, C, R, R] triplane (paper 512)."""
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig.preset("tiny"))
    """The shared decoder; its `channels` is the triplane's C."""
    render: RenderConfig = field(default_factory=lambda: RenderConfig.preset("tiny"))
    """Sampling along rays during fitting."""
    rays_per_step: int = 4096
    """Random rays per optimisation step (drawn from all training views of the avatar)."""
    occupancy_size: int = 64
    """Cells per side of the occupancy grid carved from the views' alpha masks (0 = no empty-space skipping)."""
    triplane_init_std: float = 0.1
    """Std of the random initial triplane (authors: 0.1). Texels no ray reaches keep it, so triplanes meant as
    diffusion training data are fitted from a smaller one (less noise for the generative model to learn)."""
    triplane_lr: float = 2e-2
    """Adam learning rate of the triplane (authors: 2e-2)."""
    replay_lr_decay: float = 10.0
    """Task replay: a visit in epoch e starts the triplane's Adam at triplane_lr / (replay_lr_decay·e + 1)
    (authors: 10). A short budget may want a milder decay: later visits otherwise barely move the triplanes."""
    decoder_lr: float = 2e-3
    """Adam learning rate of the decoder (authors: 2e-3, betas 0.9/0.99)."""
    decoder_lr_decay_steps: int = 0
    """Decoder lr × 0.1^(step / this) (0 = constant)."""
    tv_weight: float = 2e-4
    """Total-variation weight on the triplane (authors' stage 1: 2e-4)."""
    l1_weight: float = 1e-6
    """L1 weight on triplane values (authors' stage 1: 1e-6)."""
    l2_weight: float = 0.0
    """L2 weight on triplane values (the paper's 'weight decay' row of Table 4a)."""
    empty_weight: float = 0.3
    """Weight of the emptiness loss: opacity of random points outside the visual hull is pushed to zero, so the
    triplane renders clean without the fitting-time occupancy grid (0 = off)."""
    empty_points: int = 4096
    """Random points drawn per step for the emptiness loss (those that fall outside the hull are used)."""
    iwc_weight: float = 0.1
    """λ of the IWC term (Eq. 3); 0 disables it (authors: 0.1)."""
    fisher_batches: int = 4
    """Ray batches averaged for the diagonal Fisher after each visit (the authors use one)."""
    mode: str = "replay_iwc"
    """Stage-1 schedule: naive (each avatar once, to convergence), replay (task replay), replay_iwc (+ IWC)."""
    epochs: int = 4
    """Task replay: outer loops over all avatars."""
    inner_steps: int = 50
    """Task replay: steps per visit. Naive mode gives each avatar epochs × inner_steps steps in one visit."""
    stage2_steps: int = 800
    """Stage 2: steps per avatar with the decoder frozen."""
    stage2_final_lr: float = 0.1
    """Stage 2: the triplane lr decays exponentially to this fraction of triplane_lr by the last step (1 = constant)."""
    stage2_warm_start: str = ""
    """Stage 2: a triplane file, or a folder of triplanes fitted with the same decoder (e.g. a stage-1 run's
    triplanes/), whose mean every fit starts from (plus the init noise); empty = noise alone."""
    batch_avatars: int = 8
    """Stage 2: avatars fitted at once by one optimizer, their rays decoded in one pass (1 = the per-avatar path).
    Each avatar keeps its own seed, Adam state and lr schedule, so the batch size does not change a fit. On a
    2-core CPU 4 and 8 are equally fast (docs/fitting_at_scale.md); a GPU wants more."""
    stage2_plateau_db: float = 0.0
    """Stage 2, batched: an avatar stops early once its probe PSNR gained less than this over the last
    `stage2_check_every` steps (0 = always run stage2_steps); its slot takes the next avatar."""
    stage2_check_every: int = 25
    """Stage 2, batched: steps between probe PSNR checks. The probe: fixed rays of the avatar's training views,
    rendered without jitter (the test views stay unseen until the final score)."""
    stage2_min_steps: int = 50
    """Stage 2, batched: no early stop before this many steps."""
    eval_views: int = 4
    """Held-out views used for PSNR/SSIM during and after fitting."""
    eval_resolution: int = 64
    """Resolution of evaluation renders (forgetting curves are evaluated often, so keep it small)."""
    forgetting_avatars: int = 16
    """Stage 1 logs the forgetting curve after every visit over at most this many of the avatars seen so far
    (evenly spaced, 0 = all): evaluating every avatar after every visit costs K² evaluations per epoch."""
    seed: int = 0
    """Seed of triplane initialisation and ray sampling."""
    device: str = "cpu"
    """torch device (cpu, cuda, cuda:1, ...)."""

    # what is logged, and the batch size (a fit does not depend on it), may change on resume
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("forgetting_avatars", "batch_avatars")

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {
            "triplane_resolution": 512, "decoder": DecoderConfig.PRESETS["paper"],
            "render": RenderConfig.PRESETS["paper"], "rays_per_step": 8192, "occupancy_size": 256,
            "tv_weight": 2e-4, "l1_weight": 1e-6, "iwc_weight": 0.1, "epochs": 30, "inner_steps": 6000,
            "stage2_steps": 30000, "eval_views": 8, "eval_resolution": 256, "decoder_lr_decay_steps": 300000,
            "device": "cuda",
        },
    }

    def validate(self) -> None:
        if self.mode not in ("naive", "replay", "replay_iwc"):
            raise ConfigError(f"mode must be naive, replay or replay_iwc (got {self.mode!r})")
        if self.triplane_resolution < 4 or self.rays_per_step < 1:
            raise ConfigError("triplane_resolution must be ≥ 4 and rays_per_step ≥ 1")
        if min(self.epochs, self.inner_steps, self.stage2_steps, self.fisher_batches) < 1:
            raise ConfigError("epochs, inner_steps, stage2_steps and fisher_batches must be ≥ 1")
        if self.batch_avatars < 1 or self.stage2_check_every < 1 or self.stage2_min_steps < 0:
            raise ConfigError("batch_avatars and stage2_check_every must be ≥ 1, stage2_min_steps ≥ 0")
        if self.stage2_plateau_db < 0:
            raise ConfigError(f"stage2_plateau_db cannot be negative (got {self.stage2_plateau_db})")
        if self.stage2_plateau_db and self.batch_avatars == 1:
            raise ConfigError("early stopping (stage2_plateau_db) belongs to the batched fitter: set batch_avatars ≥ 2")
        if self.forgetting_avatars < 0:
            raise ConfigError(f"forgetting_avatars cannot be negative (got {self.forgetting_avatars})")
        if min(self.tv_weight, self.l1_weight, self.l2_weight, self.iwc_weight) < 0:
            raise ConfigError("regulariser weights cannot be negative")

    @property
    def channels(self) -> int:
        return self.decoder.channels
