"""engine.preprocess: face detection, roll, training framing, matte, and the API's contract (errors, sizes,
determinism). Real photos: assets/portraits (public domain)."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from image_helpers import faceless_photo, mostly_transparent_rgba, save_fully_transparent_palette_png, textured
from PIL import Image

from engine.errors import UserError
from engine.portrait import load_portrait
from engine.preprocess import CropBox, NoFaceFound, PreparedPortrait, prepare_portrait
from engine.preprocess.framing import (
    FACE_CENTRE, FACE_SIZE, apply, centre_square, crop_for_face, output_to_source, source_to_output,
)

PORTRAITS = Path(__file__).resolve().parents[2] / "assets" / "portraits"
# Hand-labelled faces (x, y, w, h: brow/hairline to chin, cheek to cheek) and eye centres.
LABELS = {"astronaut.png": ((185, 80, 83, 100), ((203, 102), (245, 103))),
          "grace_hopper.jpg": ((180, 143, 170, 187), ((222, 188), (305, 187)))}


@pytest.fixture(scope="module")
def prepared() -> dict[str, PreparedPortrait]:
    return {name: prepare_portrait(PORTRAITS / name) for name in LABELS}


def alpha(prepared: PreparedPortrait) -> np.ndarray:
    return np.asarray(prepared.image)[..., 3].astype(np.float64) / 255.0


# ------------------------------------------------------------------------------------------ real photos
@pytest.mark.parametrize("name", sorted(LABELS))
def test_the_face_lands_where_the_training_faces_are(prepared, name):
    result = prepared[name]
    (x, y, w, h), eyes = LABELS[name]
    assert result.face is not None and result.faces_found == 1 and result.crop_from == "face"
    assert result.source_size == Image.open(PORTRAITS / name).size
    to_output = source_to_output(result.crop, 256)
    centre = apply(to_output, [(x + w / 2, y + h / 2)])[0] / 256
    assert np.abs(centre - FACE_CENTRE).max() < 0.06  # the hand label's centre, not the detector's
    size = math.sqrt(w * h) / result.crop.size
    assert 0.7 * FACE_SIZE < size < 1.3 * FACE_SIZE
    (lx, ly), (rx, ry) = apply(to_output, eyes)
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) < 3.0  # the eye line is level after alignment
    assert result.roll is not None


@pytest.mark.parametrize("name", sorted(LABELS))
def test_the_matte_keeps_the_face_and_clears_the_corners(prepared, name):
    a = alpha(prepared[name])
    cx, cy = (round(v * 256) for v in FACE_CENTRE)
    assert a[cy - 3:cy + 4, cx - 3:cx + 4].min() > 0.99
    corners = [a[:8, :8], a[:8, -8:], a[-8:, :8], a[-8:, -8:]]
    assert max(c.max() for c in corners) < 0.01
    assert 0.1 < a.mean() < 0.6  # a bust, not a blank or the whole square
    assert prepared[name].matte == "grabcut"


def test_the_record_is_json_and_names_what_was_done(prepared):
    import json

    record = json.loads(json.dumps(prepared["astronaut.png"].record()))
    assert record["detector"].startswith("opencv-haar:") and record["faces_found"] == 1
    assert record["crop_from"] == "face" and record["matte"] == "grabcut" and record["size"] == 256
    assert record["eyes"] is not None
    assert record["angle_degrees"] == round(prepared["astronaut.png"].crop.angle_degrees, 2)
    assert {"open_s", "detect_s", "align_s", "crop_s", "matte_s", "total_s"} <= set(record["timings"])


def test_same_input_same_bytes(prepared):
    again = prepare_portrait(PORTRAITS / "astronaut.png")
    assert again.image.tobytes() == prepared["astronaut.png"].image.tobytes()
    assert again.crop == prepared["astronaut.png"].crop


@pytest.mark.parametrize("degrees", [15.0, -15.0])
def test_roll_is_measured_from_the_eyes(prepared, degrees):
    """The photo turned counter-clockwise by 15° → the crop turns with it (upright estimate + 15°)."""
    photo = Image.open(PORTRAITS / "astronaut.png").convert("RGB")
    turned = photo.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    result = prepare_portrait(turned, matte=False)
    assert result.roll is not None
    upright = prepared["astronaut.png"].crop.angle_degrees
    assert result.crop.angle_degrees == pytest.approx(upright + degrees, abs=4.0)
    assert prepare_portrait(turned, matte=False, align=False).crop.angle_degrees == 0.0


def test_a_large_photo_is_detected_on_a_downscaled_copy():
    photo = Image.open(PORTRAITS / "astronaut.png").convert("RGB")
    big = Image.new("RGB", (2400, 1600), (200, 200, 200))
    big.paste(photo.resize((1600, 1600), Image.Resampling.BILINEAR), (500, 0))
    result = prepare_portrait(big, matte=False)
    scale = 1600 / 512
    x, y, w, h = LABELS["astronaut.png"][0]
    centre = apply(source_to_output(result.crop, 256), [(500 + (x + w / 2) * scale, (y + h / 2) * scale)])[0] / 256
    assert np.abs(centre - FACE_CENTRE).max() < 0.06
    assert result.crop.size == pytest.approx(scale * 444.4, rel=0.1)


# ------------------------------------------------------------------------------------------ no face, crops
@pytest.mark.parametrize("kind", ["noise", "gradient"])
def test_no_face_raises_a_message_saying_what_to_do(tmp_path, kind):
    ramp = np.linspace(0, 255, 320).astype(np.uint8)
    pixels = textured(240, 320) if kind == "noise" else np.repeat(np.tile(ramp, (240, 1))[..., None], 3, 2)
    path = tmp_path / f"{kind}.png"
    Image.fromarray(pixels).save(path)
    with pytest.raises(NoFaceFound) as info:
        prepare_portrait(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert str(path) in message and "no face found" in message
    assert "--crop X,Y,SIZE" in message and "--preprocess off" in message and "Crop…" in message


# --------------------------------------------------------------------------------------- nothing to see
@pytest.mark.parametrize("detect", [True, False])
def test_a_fully_transparent_image_is_refused(tmp_path, detect):
    path = save_fully_transparent_palette_png(tmp_path / "empty.png")
    with pytest.raises(UserError, match="empty.png: the image is fully transparent"):
        prepare_portrait(path, detect=detect)
    square = save_fully_transparent_palette_png(tmp_path / "square.png", (64, 64))  # would pass as "as_is"
    with pytest.raises(UserError, match="fully transparent"):
        prepare_portrait(square)


def test_an_almost_fully_transparent_image_is_refused():
    with pytest.raises(UserError, match=r"almost fully transparent \(only 0\.2% of it is visible\)"):
        prepare_portrait(mostly_transparent_rgba(200, 10), detect=False)
    kept = prepare_portrait(mostly_transparent_rgba(200, 40), detect=False, matte=False)  # 4 %: enough to see
    assert (np.asarray(kept.image)[..., 3] == 255).mean() > 0.03


@pytest.mark.parametrize("options", [{}, {"detect": False, "matte": False}, {"crop": CropBox(10, 10, 100)}])
def test_one_flat_colour_is_refused_before_detection(options):
    flat = np.full((160, 200, 3), (180, 140, 120), np.uint8)
    with pytest.raises(UserError, match="is one flat colour") as info:
        prepare_portrait(flat, **options)
    assert not isinstance(info.value, NoFaceFound)  # its ways out ("--preprocess off") would not help
    near_flat = flat.copy()
    near_flat[::2] += 3  # a 1.5-step standard deviation: still nothing to see
    with pytest.raises(UserError, match="one flat colour"):
        prepare_portrait(near_flat, detect=False)


def test_a_matte_that_leaves_nothing_is_refused_with_the_way_out():
    with pytest.raises(UserError) as info:
        prepare_portrait(textured(120, 120), detect=False)  # GrabCut with no subject clears everything
    message = str(info.value)
    assert "after the crop and background removal is" in message and "transparent" in message
    assert "--preprocess off" in message and "--crop X,Y,SIZE" in message
    assert prepare_portrait(textured(120, 120), detect=False, matte=False).matte == "none"  # the way out works


def test_a_faceless_photo_needs_a_crop_and_then_works():
    with pytest.raises(NoFaceFound):
        prepare_portrait(faceless_photo())
    result = prepare_portrait(faceless_photo(), crop=CropBox(50, 50, 200))
    assert result.matte == "grabcut" and 0.2 < alpha(result).mean() < 0.7


def test_load_portrait_checks_content_only_when_asked(tmp_path):
    path = save_fully_transparent_palette_png(tmp_path / "empty.png")
    assert float(load_portrait(path, 16).min()) == 1.0  # training data path: composited over white, as before
    with pytest.raises(UserError, match="fully transparent"):
        load_portrait(path, 16, check_content=True)


def test_a_given_crop_bypasses_detection():
    pixels = np.full((200, 300, 3), 90, np.uint8)  # no face: detection would fail
    pixels[60:80, 110:130] = (255, 0, 0)  # a red marker at the centre of the crop below
    result = prepare_portrait(pixels, crop=CropBox(70, 20, 100), size=50, matte=False)
    assert result.face is None and result.crop_from == "manual" and result.faces_found == 0
    out = np.asarray(result.image)
    assert out.shape == (50, 50, 4) and out[..., 3].min() == 255
    red = np.argwhere((out[..., 0] > 200) & (out[..., 1] < 50))
    assert red.min(0).tolist() == [20, 20] and red.max(0).tolist() == [29, 29]
    assert result.record()["crop"] == {"x": 70.0, "y": 20.0, "size": 100.0, "angle_degrees": 0.0}


def test_a_crop_past_the_image_is_transparent_there():
    result = prepare_portrait(textured(100, 100), crop=CropBox(-50, 0, 100), size=20, matte=False)
    a = np.asarray(result.image)[..., 3]
    assert a[:, :9].max() == 0 and a[:, 11:].min() == 255


def test_a_crop_outside_the_image_is_refused():
    with pytest.raises(UserError, match="lies outside"):
        prepare_portrait(textured(100, 100), crop=CropBox(500, 0, 50))


def test_without_detection_the_centre_square_is_cut_like_load_portrait():
    photo = Image.open(PORTRAITS / "grace_hopper.jpg")
    result = prepare_portrait(photo, detect=False, matte=False)
    assert result.crop == CropBox(0.0, 44.0, 512.0) and result.crop_from == "centre" and result.matte == "none"
    ours = np.asarray(result.image)[..., :3].astype(np.float64) / 255
    theirs = load_portrait(photo, 256).permute(1, 2, 0).numpy()
    assert np.abs(ours - theirs).mean() < 0.01


def test_without_detection_the_matte_still_runs():
    result = prepare_portrait(PORTRAITS / "astronaut.png", detect=False)
    a = alpha(result)
    assert result.matte == "grabcut" and a[0, 0] == 0.0 and 0.05 < a.mean() < 0.9


@pytest.mark.parametrize("text", ["10,20", "a,b,c", "1,2,3,4", "1,2,0", "1,2,-5", "nan,1,20", ""])
def test_cropbox_parse_refuses_bad_text(text):
    with pytest.raises(UserError, match="--crop"):
        CropBox.parse(text)


def test_cropbox_parse_reads_pixels():
    assert CropBox.parse(" 10, 20.5 ,300") == CropBox(10.0, 20.5, 300.0, 0.0)


# ------------------------------------------------------------------------------------------ inputs, outputs
def test_a_corrupt_file_gives_load_portraits_message(tmp_path):
    path = tmp_path / "broken.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[:200])
    for bad in (path, tmp_path / "missing.png", tmp_path):
        with pytest.raises(UserError) as ours:
            prepare_portrait(bad)
        with pytest.raises(UserError) as theirs:
            load_portrait(bad, 256)
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("source, size", [
    (textured(30, 70, channels=0), 256),
    (textured(70, 30, channels=4) | np.uint8(128), 64),  # alpha ≥ 128: visible
    (Image.fromarray(textured(40, 40)).convert("P"), 33),
])
def test_the_output_is_always_square_rgba(source, size):
    result = prepare_portrait(source, detect=False, matte=False, size=size)  # GrabCut clears pure noise
    assert result.image.mode == "RGBA" and result.image.size == (size, size)


def test_exif_rotation_is_applied_before_anything(tmp_path):
    image = Image.fromarray(textured(40, 60))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "turned.jpg"
    image.save(path, exif=exif)
    assert prepare_portrait(path, detect=False, matte=False).source_size == (40, 60)


def test_a_prepared_portrait_is_taken_as_it_is(prepared):
    first = prepared["astronaut.png"].image
    again = prepare_portrait(first)
    assert again.crop_from == "as_is" and again.face is None and again.matte == "source_alpha"
    a, b = np.asarray(first), np.asarray(again.image)
    assert np.array_equal(a[..., 3], b[..., 3])
    opaque = a[..., 3] == 255
    assert np.abs(a[opaque].astype(int) - b[opaque]).max() <= 1


# ------------------------------------------------------------------------------------------ framing maths
@pytest.mark.parametrize("angle", [0.0, 12.0, -30.0])
def test_crop_for_face_puts_the_face_at_the_target(angle):
    crop = crop_for_face((321.0, 123.0), 80.0, angle)
    assert crop.size == pytest.approx(80.0 / FACE_SIZE)
    assert apply(source_to_output(crop, 256), [(321.0, 123.0)])[0] == pytest.approx(np.array(FACE_CENTRE) * 256)
    assert crop.angle_degrees == angle
    # the output's x axis follows the turned eye line: counter-clockwise on screen = up to the right
    (x0, y0), (x1, y1) = apply(output_to_source(crop, 256), [(0.0, 0.0), (1.0, 0.0)])
    assert math.degrees(math.atan2(y0 - y1, x1 - x0)) == pytest.approx(angle)


def test_centre_square_matches_load_portrait():
    assert centre_square(100, 40) == CropBox(30.0, 0.0, 40.0)
    assert centre_square(41, 100) == CropBox(0.0, 29.0, 41.0)
