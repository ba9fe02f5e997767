"""How much of the generator's palette a frozen decoder can paint: for every clothing and hair colour of the
synthetic avatars, the closest colour the decoder emits from features inside the triplane box, and its CIE Lab
distance (ΔE76) to the target. Baseline: the decoder as given; beside it, the same weights with the direct
colour path (`colour_skip`) added — reach by construction, before any training.

    python benchmarks/decoder_reach.py [--decoder assets/models/default/decoder] [--skip 4]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.decoder import TriplaneDecoder, load_decoder  # noqa: E402
from training.fit.reach import closest_colours  # noqa: E402
from training.synth import palettes  # noqa: E402
from training.text.colours import srgb_to_lab  # noqa: E402


def palette() -> dict[str, tuple[float, float, float]]:
    colours = {f"cloth {k}": v for k, v in palettes.CLOTH.items()}
    colours.update({f"hair {k}": v for k, v in {**palettes.HAIR_NATURAL, **palettes.HAIR_DYED}.items()})
    return colours


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), axis=-1)


def with_skip(decoder: TriplaneDecoder, gain: float) -> TriplaneDecoder:
    config = dataclasses.replace(decoder.config, colour_skip=gain)
    skipped = TriplaneDecoder(config)
    skipped.load_state_dict(decoder.state_dict())
    return skipped.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", type=Path, default=ROOT / "assets" / "models" / "default" / "decoder")
    parser.add_argument("--skip", type=float, default=4.0, help="colour_skip gain of the comparison decoder")
    parser.add_argument("--starts", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    colours = palette()
    names, targets = list(colours), np.array(list(colours.values()))
    decoder = load_decoder(args.decoder)
    rows = {}
    for label, model in (("as given", decoder), (f"+ colour_skip {args.skip:g}", with_skip(decoder, args.skip))):
        started = time.perf_counter()
        reached = closest_colours(model, torch.tensor(targets, dtype=torch.float32), starts=args.starts).numpy()
        rows[label] = (reached, delta_e(reached, targets), time.perf_counter() - started)
    labels = list(rows)
    print(f"{'colour':24s}" + "".join(f"{lab:>34s}" for lab in labels))
    for i, name in enumerate(names):
        cells = [f"({', '.join(f'{c:.2f}' for c in rows[lab][0][i])}) ΔE {rows[lab][1][i]:5.1f}" for lab in labels]
        print(f"{name:24s}" + "".join(f"{c:>34s}" for c in cells))
    for lab in labels:
        de = rows[lab][1]
        print(f"{lab}: mean ΔE {de.mean():.2f}, worst {de.max():.2f} ({names[int(de.argmax())]}), "
              f"{(de < 5).mean():.0%} of colours within ΔE 5 ({rows[lab][2]:.1f} s)")
    base, new = rows[labels[0]][1].mean(), rows[labels[1]][1].mean()
    print(f"mean ΔE ratio (as given / with skip): {base / max(new, 1e-9):.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
