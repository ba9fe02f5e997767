"""Evaluation of a trained model (`rodinhd eval`): the paper's Tables 1–3 and Fig. 9 on held-out avatars."""
from training.eval.consistency import ConsistencyScores, ConsistencySettings, consistency, epipolar_image
from training.eval.runner import EvalSettings, Progress, run_evaluation

__all__ = ["ConsistencyScores", "ConsistencySettings", "EvalSettings", "Progress", "consistency",
           "epipolar_image", "run_evaluation"]
