"""Assemble an avatar from its attributes: a list of parts (mesh + material uniforms) and the avatar-wide
uniforms used by the skin and eye shading."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.synth.accessories import earrings, glasses, hat
from training.synth.attributes import CLOTHING_CUTS, LOGOS, PATTERNS, AvatarAttributes
from training.synth.body import Torso, cut_meshes
from training.synth.hair import brows, facial_hair, scalp_hair
from training.synth.head import HeadShape, ear_meshes, eye_meshes, head_mesh, neck_mesh
from training.synth.mesh import Mesh

SKIN, EYE, HAIR, CLOTH, PLAIN = 0, 1, 2, 3, 4
EYELID = {"neutral": 0.52, "smile": 0.38, "open_mouth": 0.62, "closed_eyes": -1.0}


@dataclass
class Part:
    name: str
    mesh: Mesh
    material: int
    uniforms: dict = field(default_factory=dict)


@dataclass
class Scene:
    parts: list[Part]
    uniforms: dict  # avatar-wide (skin painting, eyes)

    @property
    def triangle_count(self) -> int:
        return sum(len(p.mesh.indices) for p in self.parts)


def _cloth_uniforms(a: AvatarAttributes) -> dict:
    c = a.clothing
    return {"u_rgb": c.rgb, "u_rgb2": c.rgb2, "u_rgb3": c.rgb3, "u_inner": c.inner_rgb,
            "u_pattern": PATTERNS.index(c.pattern), "u_logo": LOGOS.index(c.logo),
            "u_cut": CLOTHING_CUTS.index(c.cut), "u_scale": c.pattern_scale}


def avatar_uniforms(a: AvatarAttributes) -> dict:
    f, h = a.face, a.hair
    smile = {"smile": 1.0, "open_mouth": 0.3}.get(f.expression, 0.0)
    opening = 1.0 if f.expression == "open_mouth" else 0.0
    scalp = {"bald": 0, "buzz": 2}.get(h.style, 1)
    stubble = {"stubble": 1.0, "full_beard": 0.9, "moustache": 0.0}.get(h.facial, 0.0)
    return {
        "u_skin": f.skin_rgb, "u_lip": f.lip_rgb, "u_scalp_rgb": h.rgb if scalp else h.facial_rgb,
        "u_scalp": scalp, "u_stubble": stubble, "u_eye_rgb": f.eye_rgb, "u_lid": EYELID[f.expression],
        "u_mouth": (0.21 * f.mouth_width, smile, opening, f.lip_fullness),
    }


def build_scene(a: AvatarAttributes) -> Scene:
    """All geometry of the avatar. Strand placement draws from a generator seeded by the avatar's seed."""
    rng = np.random.default_rng(np.random.SeedSequence([a.seed, 0x6A1B]))
    smile = {"smile": 1.0, "open_mouth": 0.3}.get(a.face.expression, 0.0)
    masculine = {"masculine": 1.0, "neutral": 0.5}.get(a.presentation, 0.0)
    head = HeadShape(a.face, smile)
    torso = Torso(shoulder_scale=0.95 + 0.08 * masculine)
    neck = neck_mesh(masculine)
    parts = [
        Part("head", head_mesh(head), SKIN),
        Part("ears", ear_meshes(head), SKIN),
        Part("neck", neck, SKIN),
        Part("eyes", eye_meshes(head), EYE),
        Part("torso", torso.mesh(), CLOTH, _cloth_uniforms(a)),
        Part("brows", brows(a.face, a.hair, head, torso, rng), HAIR),
    ]
    neck_radius = 0.108 + 0.015 * masculine
    for i, (_, mesh) in enumerate(cut_meshes(a.clothing, neck_radius)):
        parts.append(Part(f"{a.clothing.cut}_{i}", mesh, CLOTH, _cloth_uniforms(a)))
    for name, mesh in (("hair", scalp_hair(a.hair, head, torso, rng)),
                       ("facial_hair", facial_hair(a.face, a.hair, head, torso, rng))):
        if mesh is not None:
            parts.append(Part(name, mesh, HAIR))
    _add_accessories(parts, a, head)
    return Scene(parts, avatar_uniforms(a))


def _add_accessories(parts: list[Part], a: AvatarAttributes, head: HeadShape) -> None:
    acc = a.accessories
    frames, lenses = glasses(acc, head)
    if frames is not None:
        parts.append(Part("glasses", frames, PLAIN, {"u_rgb": acc.glasses_rgb, "u_spec": 0.5, "u_shininess": 60.0}))
    if lenses is not None:
        parts.append(Part("lenses", lenses, PLAIN, {"u_rgb": (0.04, 0.04, 0.05), "u_spec": 0.9, "u_shininess": 120.0}))
    volume = {"curly": 0.05, "bob": 0.02, "long_straight": 0.015}.get(a.hair.style, 0.01)
    crown, brim = hat(acc, head, volume)
    if crown is not None:
        knit = 4 if acc.hat == "beanie" else 0
        parts.append(Part("hat", crown, CLOTH, {"u_rgb": acc.hat_rgb, "u_rgb2": np.array(acc.hat_rgb) * 0.7,
                                                "u_rgb3": acc.hat_rgb, "u_inner": acc.hat_rgb, "u_pattern": knit,
                                                "u_logo": 0, "u_cut": 0, "u_scale": 1.0}))
    if brim is not None:
        parts.append(Part("brim", brim, PLAIN, {"u_rgb": np.array(acc.hat_rgb) * 0.85, "u_spec": 0.05,
                                                "u_shininess": 8.0}))
    rings = earrings(acc, head)
    if rings is not None:
        parts.append(Part("earrings", rings, PLAIN, {"u_rgb": acc.earrings_rgb, "u_spec": 0.9, "u_shininess": 80.0}))
