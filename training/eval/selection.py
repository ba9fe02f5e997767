"""Which avatars an evaluation may use: held out from the model's training, present in the dataset, complete."""
from __future__ import annotations

from pathlib import Path

from engine.decoder import TriplaneDecoder, decoder_hash
from engine.errors import UserError
from engine.triplane import load_triplane
from training.data.format import PORTRAIT_FILE, read_index
from training.diffusion.dataset import triplane_files


def select_avatars(data: Path, training: list[str], avatars: list[str] | None, heldout: int | None) -> list[str]:
    """The avatars to evaluate: `avatars` as given (checked), or the first `heldout` dataset avatars the model
    was not trained on. Refuses unknown avatars, training avatars, duplicates and incomplete folders."""
    listed = [str(a) for a in read_index(data)["avatars"]]
    if (avatars is None) == (heldout is None):
        raise UserError("give the avatars to evaluate: --avatars NAME ... or --heldout K (one of them)")
    if heldout is not None:
        if heldout < 1:
            raise UserError(f"--heldout must be at least 1 (got {heldout})")
        if not training:
            raise UserError("the model does not list its training avatars (model_index.json 'training_avatars'), "
                            "so held-out avatars cannot be chosen for it; name them with --avatars")
        pool = [a for a in listed if a not in set(training)]
        if len(pool) < heldout:
            raise UserError(f"{data}: only {len(pool)} avatars are not in the model's training set "
                            f"(asked for --heldout {heldout})")
        chosen = pool[:heldout]
    else:
        chosen = list(avatars)
        if len(set(chosen)) != len(chosen):
            raise UserError("--avatars lists an avatar twice")
        unknown = [a for a in chosen if a not in set(listed)]
        if unknown:
            raise UserError(f"{data}: no avatar named {', '.join(unknown)} in its index.json")
        overlap = sorted(set(training) & set(chosen))
        if overlap:
            raise UserError(f"not held out: {', '.join(overlap)} were used to train the model; evaluate avatars "
                            f"the model never saw (or use --heldout K)")
    for name in chosen:
        if not (Path(data) / name / PORTRAIT_FILE).is_file():
            raise UserError(f"{Path(data) / name}: no {PORTRAIT_FILE} (the condition image)")
    return chosen


def retrieval_bank(triplanes: Path, training: list[str], evaluated: list[str], decoder: TriplaneDecoder,
                   ) -> list[str]:
    """Names of the fitted triplanes the retrieval baseline may return: the model's training avatars (or, when the
    model does not list them, every fitted avatar not being evaluated). Their decoder must be the model's."""
    fitted = {f.stem: f for f in triplane_files(triplanes)}
    names = [n for n in (training or sorted(fitted)) if n in fitted and n not in set(evaluated)]
    if not names:
        raise UserError(f"{triplanes}: none of the model's training avatars has a fitted triplane here "
                        f"(retrieval needs them; give the fit run the model was trained from)")
    _check_decoder(fitted[names[0]], decoder)
    return names


def ground_truth_triplanes(folder: Path | None, avatars: list[str], decoder: TriplaneDecoder) -> dict[str, Path]:
    """Fitted triplanes of the evaluated avatars themselves, where `folder` has them (fitted with the model's
    decoder): the reference for the consistency and epipolar figures. Missing ones are simply absent."""
    if folder is None:
        return {}
    fitted = {f.stem: f for f in triplane_files(folder)}
    found = {a: fitted[a] for a in avatars if a in fitted}
    for path in found.values():
        _check_decoder(path, decoder)
    return found


def _check_decoder(path: Path, decoder: TriplaneDecoder) -> None:
    load_triplane(path, expect_decoder_hash=decoder_hash(decoder))  # UserError naming both hashes
