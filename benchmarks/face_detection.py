"""Which face detector for engine.preprocess, measured offline (docs/preprocess.md has the numbers and the choice).

Positives: two public-domain portraits (assets/portraits: scikit-image's astronaut, matplotlib's grace_hopper)
with hand-labelled face boxes (brow/hairline to chin, cheek to cheek), upright and turned ±15°; negatives without
a human face: coffee, a cat, a rocket, brick, grass, the moon, a Hubble deep field, a flat colour, noise. Per detector setting: IoU of the largest box with the
label, hits on the turned copies, faces reported on the negatives, boxes besides the face on the photos,
milliseconds per image (one core).
With the training data present (--data, default data/diff112) also: the detection rate on the 112 synthetic
portraits and the framing measured there (framing.FACE_CENTRE / FACE_SIZE), cross-checked against the generator's
head geometry; the matte's IoU on training busts pasted onto photos; prepare_portrait's time per photo size.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_detection.py [--data data/diff112] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

from engine.preprocess import framing, matte
from engine.preprocess.face import FACE_CASCADES, MIN_NEIGHBOURS, ROLL_SEARCH, detect_faces, estimate_roll
from engine.preprocess.prepare import prepare_portrait

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ROOT / "assets" / "portraits"  # the same files as skimage.data.astronaut() / matplotlib's grace_hopper.jpg
# Hand-labelled (x, y, w, h): brow / hairline to chin, cheek to cheek (ears and hair excluded).
LABELS = {"astronaut": (185, 80, 83, 100), "grace_hopper": (180, 143, 170, 187)}
TURNS = (15.0, -15.0)
SETTINGS = [  # (name, cascades, min neighbours, head rolls searched)
    ("default", ("frontalface_default",), 4, (0.0,)),
    ("alt", ("frontalface_alt",), 4, (0.0,)),
    ("alt2", ("frontalface_alt2",), 4, (0.0,)),
    ("alt_tree", ("frontalface_alt_tree",), 4, (0.0,)),
    ("alt2 n=3", ("frontalface_alt2",), 3, (0.0,)),
    ("alt2 n=5", ("frontalface_alt2",), 5, (0.0,)),
    ("alt2 → default", ("frontalface_alt2", "frontalface_default"), 4, (0.0,)),
    ("alt2 → profile", ("frontalface_alt2", "profileface+mirror"), 4, (0.0,)),
    ("default, rolls 0,±20", ("frontalface_default",), 4, ROLL_SEARCH),
    ("alt2, rolls 0,±20", ("frontalface_alt2",), 4, ROLL_SEARCH),
]
CHOSEN = ("alt2, rolls 0,±20", FACE_CASCADES, MIN_NEIGHBOURS, ROLL_SEARCH)


def photos() -> dict[str, Image.Image]:
    return {"astronaut": Image.open(PORTRAITS / "astronaut.png").convert("RGB"),
            "grace_hopper": Image.open(PORTRAITS / "grace_hopper.jpg").convert("RGB")}


def negatives() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    return {"coffee": Image.fromarray(skimage.data.coffee()), "chelsea (cat)": Image.fromarray(skimage.data.chelsea()),
            "rocket": Image.fromarray(skimage.data.rocket()), "brick": Image.fromarray(skimage.data.brick()),
            "grass": Image.fromarray(skimage.data.grass()), "moon": Image.fromarray(skimage.data.moon()),
            "hubble": Image.fromarray(skimage.data.hubble_deep_field()),
            "flat colour": Image.new("RGB", (512, 512), (180, 140, 120)),
            "noise": Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))}


def turned(image: Image.Image, label, degrees: float):
    """The image turned counter-clockwise about its centre (same canvas), and the label's centre moved with it."""
    out = image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    x, y, w, h = label
    dx, dy = x + w / 2 - image.width / 2, y + h / 2 - image.height / 2
    a = math.radians(degrees)
    cx = image.width / 2 + dx * math.cos(a) + dy * math.sin(a)
    cy = image.height / 2 - dx * math.sin(a) + dy * math.cos(a)
    return out, (cx - w / 2, cy - h / 2, w, h)


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def hits(face, label) -> bool:
    """The box's centre lies inside the labelled face."""
    cx, cy = face.centre
    x, y, w, h = label
    return x <= cx <= x + w and y <= cy <= y + h


def timed(fn, repeat: int):
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def synthetic_portraits(data: Path | None) -> list[tuple[Path, Image.Image]]:
    if data is None or not data.is_dir():
        return []
    out = []
    for path in sorted(data.glob("*/portrait.png")):
        rgba = Image.open(path).convert("RGBA")
        out.append((path, Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba).convert("RGB")))
    return out


def detector_table(repeat: int, synth) -> None:
    pos, neg = photos(), negatives()
    print(f"\nDetectors (largest box vs hand label; turned = the photos turned ±15°; ms = one core, best of {repeat})")
    header = (f"{'setting':<22}{'astro IoU':>10}{'grace IoU':>10}{'turned':>8}{'synth':>9}{'FP neg':>8}{'extra':>7}"
              f"{'ms/img':>8}")
    print(header + "\n" + "-" * len(header))
    for name, cascades, neighbours, rolls in SETTINGS:
        detect = lambda im: detect_faces(im, cascades, neighbours, rolls)  # noqa: E731
        times, ious, extra, turned_hits = [], {}, 0, 0
        for key, image in pos.items():
            faces, seconds = timed(lambda: detect(image), repeat)
            times.append(seconds)
            ious[key] = iou((faces[0].x, faces[0].y, faces[0].w, faces[0].h), LABELS[key]) if faces else 0.0
            extra += max(0, len(faces) - 1)
            for degrees in TURNS:
                image_t, label_t = turned(image, LABELS[key], degrees)
                faces_t = detect(image_t)
                turned_hits += bool(faces_t) and hits(faces_t[0], label_t)
        false = 0
        for image in neg.values():
            faces, seconds = timed(lambda: detect(image), repeat)
            times.append(seconds)
            false += len(faces)
        synth_rate = f"{sum(bool(detect(im)) for _, im in synth)}/{len(synth)}" if synth else "-"
        print(f"{name:<22}{ious['astronaut']:>10.2f}{ious['grace_hopper']:>10.2f}"
              f"{turned_hits:>6}/{2 * len(TURNS)}{synth_rate:>9}{false:>8}{extra:>7}{1000 * np.mean(times):>8.0f}")
    print(f"FP neg = faces reported on the {len(neg)} negatives; extra = boxes besides the face on the 2 photos")


def framing_table(synth) -> None:
    """Face boxes of the chosen detector on the training portraits → the target framing."""
    boxes, eyes_in_box = [], []
    geometry = _projected_eyes(synth)
    for (path, image), eyes in zip(synth, geometry):
        faces = detect_faces(image, *CHOSEN[1:])
        if faces:
            f = faces[0]
            boxes.append((f.centre[0] / image.width, f.centre[1] / image.height, f.size / image.width))
            if eyes is not None:
                eyes_in_box.append(((eyes[0] - f.x) / f.w, (eyes[1] - f.y) / f.h, eyes[2] / f.w))
    boxes = np.array(boxes)
    print(f"\nFraming: {CHOSEN[0]} on {len(synth)} training portraits ({len(boxes)} found); fractions of the side "
          "(× 256 = px)")
    for column, name in enumerate(("face centre x", "face centre y", "face box side")):
        p5, p50, p95 = np.percentile(boxes[:, column], [5, 50, 95])
        print(f"  {name:<14} median {p50:.3f} ({p50 * 256:.1f} px)   5–95 %: {p5:.3f}–{p95:.3f}")
    print(f"  framing.py: FACE_CENTRE = {framing.FACE_CENTRE}, FACE_SIZE = {framing.FACE_SIZE}")
    if eyes_in_box:
        e = np.median(np.array(eyes_in_box), 0)
        valid = [g for g in geometry if g is not None]
        mid = np.median(np.array(valid), 0)
        print(f"  geometry: eye midpoint projected at ({mid[0]:.1f}, {mid[1]:.1f}) px, eye distance {mid[2]:.1f} px; "
              f"inside the box: x {e[0]:.3f}, y {e[1]:.3f}, distance/box {e[2]:.3f}")
        for key, image in photos().items():
            face = detect_faces(image, *CHOSEN[1:])[0]
            (lx, ly), (rx, ry) = estimate_roll(image, face).eyes
            print(f"  {key}: box {face.to_dict()}; its eyes inside the box: x {((lx + rx) / 2 - face.x) / face.w:.3f}, "
                  f"y {((ly + ry) / 2 - face.y) / face.h:.3f}, distance/box {math.hypot(rx - lx, ry - ly) / face.w:.3f}")


def _projected_eyes(synth) -> list:
    """(eye midpoint u, v, eye distance) in pixels of each training portrait, from the generator's head geometry
    and the frontal camera; None where the attributes are missing."""
    from engine.cameras import DEFAULT_FOV_DEGREES, DEFAULT_ORBIT, look_at, orbit_position, project
    from training.synth.attributes import sample_attributes
    from training.synth.head import HeadShape

    target = np.asarray(DEFAULT_ORBIT.target)
    c2w = look_at(orbit_position(0.0, 0.0, DEFAULT_ORBIT.radius, target), target)
    out = []
    for path, image in synth:
        attributes_file = path.parent / "attributes.json"
        if not attributes_file.is_file():
            out.append(None)
            continue
        attributes = sample_attributes(json.loads(attributes_file.read_text())["seed"])
        smile = {"smile": 1.0, "open_mouth": 0.3}.get(attributes.face.expression, 0.0)
        centres, _ = HeadShape(attributes.face, smile).eye_centres()
        uv = project(centres, c2w, math.radians(DEFAULT_FOV_DEGREES), image.width, image.height)[:, :2]
        out.append((*uv.mean(0), uv[1, 0] - uv[0, 0]))
    return out


def matte_table(data: Path, count: int = 24) -> None:
    """GrabCut's matte vs the true alpha of training busts pasted onto photos (the framing is exact there)."""
    paths = sorted(data.glob("*/portrait.png"))[:count]
    backgrounds = [skimage.data.coffee(), skimage.data.rocket(), np.full((64, 64, 3), (90, 120, 160), np.uint8)]
    scores, times = [], []
    for index, path in enumerate(paths):
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        side = rgba.shape[0]
        background = cv2.resize(backgrounds[index % len(backgrounds)], (side, side), interpolation=cv2.INTER_AREA)
        alpha = rgba[..., 3:].astype(np.float32) / 255.0
        photo = np.rint(rgba[..., :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)
        opaque = np.dstack([photo, np.full((side, side), 255, np.uint8)])
        start = time.perf_counter()
        found = matte.grabcut_alpha(opaque, framed=True) > 0.5
        times.append(time.perf_counter() - start)
        truth = rgba[..., 3] > 127
        scores.append((found & truth).sum() / (found | truth).sum())
    scores = np.array(scores)
    print(f"\nMatte: {len(paths)} training busts on coffee / rocket / flat blue, GrabCut at {matte.GRABCUT_SIZE}², "
          f"{matte.GRABCUT_ITERATIONS} iterations: IoU with the true alpha mean {scores.mean():.3f}, "
          f"min {scores.min():.3f}; {1000 * np.median(times):.0f} ms each")


def prepare_table(repeat: int) -> None:
    """From the file (decoding included) to the 256² RGBA."""
    astronaut = photos()["astronaut"]
    big = astronaut.resize((3000, 3000), Image.Resampling.BICUBIC).crop((-500, 0, 3500, 3000))
    print(f"\nprepare_portrait(file) → 256² RGBA (one core, best of {repeat}; stages in ms)")
    with tempfile.TemporaryDirectory() as folder:
        big_file = Path(folder) / "big.jpg"
        big.save(big_file, quality=90)
        sources = {"astronaut.png 512²": PORTRAITS / "astronaut.png", "grace_hopper.jpg 512×600":
                   PORTRAITS / "grace_hopper.jpg", "astronaut JPEG 4000×3000": big_file}
        for name, path in sources.items():
            prepared, seconds = timed(lambda: prepare_portrait(path), repeat)
            stages = ", ".join(f"{k[:-2]} {1000 * v:.0f}" for k, v in prepared.timings.items() if k != "total_s")
            print(f"  {name:<26} {1000 * seconds:6.0f} ms   ({stages})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "diff112", help="training portraits (optional)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as the studio's worker thread would see it on a busy machine
    synth = synthetic_portraits(args.data)
    if not synth:
        print(f"({args.data} not found: the synthetic columns and the framing/matte tables are skipped)")
    detector_table(args.repeat, synth)
    if synth:
        framing_table(synth)
        matte_table(args.data)
    prepare_table(args.repeat)


if __name__ == "__main__":
    main()
