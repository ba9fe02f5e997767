"""The generator's camera rig: training views on an orbit (view 0 frontal) and disjoint held-out views."""
from __future__ import annotations

import math

import numpy as np

from engine.cameras import OrbitSpec, look_at, orbit_position, orbit_views
from training.data.format import TEST_DIR, TRAIN_DIR, Frame, ViewSet, frame_name
from training.synth.config import SynthConfig

TEST_PHASE = 0.5


def orbit_spec(config: SynthConfig) -> OrbitSpec:
    return OrbitSpec(config.radius, (0.0, config.target_y, 0.0), config.elevation_min, config.elevation_max)


def view_set(config: SynthConfig, split: str) -> ViewSet:
    """Cameras of one split ('train' or 'test'), with file paths relative to the avatar folder."""
    spec = orbit_spec(config)
    count, phase, folder = (config.views, 0.0, TRAIN_DIR) if split == "train" else (config.test_views, TEST_PHASE, TEST_DIR)
    target = np.asarray(spec.target)
    frames = [
        Frame(f"{folder}/{frame_name(i)}", look_at(orbit_position(az, el, spec.radius, target), target))
        for i, (az, el) in enumerate(orbit_views(spec, count, phase))
    ]
    return ViewSet(math.radians(config.fov_degrees), frames)
