"""In-the-wild portrait → the model's input in the training framing: face detection (OpenCV Haar cascades), roll
from the eyes, the crop that puts the face where the synthetic training faces are, and a GrabCut background
matte (RGBA, transparent background). See docs/preprocess.md.

    from engine.preprocess import prepare_portrait
    prepared = prepare_portrait("photo.jpg")          # prepared.image: RGBA 256×256
    avatar = pipe(prepared.image)                     # load_portrait composites it over white
"""
from engine.preprocess.face import FaceBox, Roll
from engine.preprocess.framing import CropBox
from engine.preprocess.prepare import NoFaceFound, PreparedPortrait, prepare_portrait

__all__ = ["CropBox", "FaceBox", "NoFaceFound", "PreparedPortrait", "Roll", "prepare_portrait"]
