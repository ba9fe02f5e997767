"""GLSL generation for the triplane ray-marcher.

The decoder's weights become literal constants in straight-line code, spliced into the templates under
assets/shaders: on llvmpipe ~8× faster per frame than weights read from constant arrays in a loop (~10× than
uniform buffers), for a long first compile (~10 s cold for the tiny preset on llvmpipe, once per decoder; drivers'
shader caches keep it across runs). Vectors are vec4 variables; a linear layer adds, for every input scalar, that
scalar times a literal vec4 of weights (one vec4 per 4 outputs).
"""
from __future__ import annotations

import numpy as np
import torch

from engine.assets import shader_source
from engine.decoder import TriplaneDecoder
from engine.triplane import PLANE_AXES

DEFINES_MARK = "//@DEFINES"
RAYS_MARK = "//@RAYS"
DECODER_MARK = "//@DECODER"
TRUNC_EXP_MAX = 15.0  # engine.decoder.trunc_exp clamps its input here
COMPONENTS = "xyzw"


def vertex_source() -> str:
    return shader_source("fullscreen.vert")


def fast_fragment_source() -> str:
    """The ray-marcher of the baked volume (no decoder: one program serves every avatar)."""
    return _splice(shader_source("triplane_fast.frag"), {RAYS_MARK: shader_source("triplane_rays.glsl")})


def exact_fragment_source(decoder: TriplaneDecoder) -> str:
    """The exact ray-marcher (and volume baker) for this decoder."""
    return _splice(shader_source("triplane_exact.frag"), {DEFINES_MARK: defines(decoder),
                                                          RAYS_MARK: shader_source("triplane_rays.glsl"),
                                                          DECODER_MARK: decoder_function(decoder)})


def defines(decoder: TriplaneDecoder) -> str:
    config = decoder.config
    axes = "xyz"
    lines = [f"#define GROUPS {config.channels // 4}",  # vec4s of channels per plane
             f"#define FEATURE_GROUPS {config.feature_dim // 4}",
             f"#define AGGREGATE_{config.aggregate.upper()}"]
    # (column, row) coordinates of each plane, from the one table engine.triplane samples with
    lines += [f"#define PLANE{k}_UV(p) (p).{axes[col]}{axes[row]}" for k, (col, row) in enumerate(PLANE_AXES)]
    return "\n".join(lines)


def decoder_function(decoder: TriplaneDecoder) -> str:
    """`void decode(vec4 feat[FEATURE_GROUPS], vec3 dir, out float sigma, out vec3 rgb)`: TriplaneDecoder.forward."""
    config = decoder.config
    code = _Code()
    features = _scalars([f"feat[{g}]" for g in range(config.feature_dim // 4)], config.feature_dim)
    colour, density = features[:decoder.colour_in], features[decoder.colour_in:]

    first, second = decoder.density_net[0], decoder.density_net[2]
    hidden = _linear(code, "dh", _encode(code, "dx", density, config.frequencies), first.weight, first.bias)
    code.apply("softplus", hidden)
    out = _scalars(_linear(code, "dout", _scalars(hidden, config.hidden), second.weight, second.bias),
                   1 + config.geo_features)
    code.line(f"sigma = exp(min({out[0]}, {_literal(TRUNC_EXP_MAX)}));")

    inputs = _encode(code, "cx", colour, config.frequencies) + out[1:]
    if config.view_dependent:
        inputs += _encode(code, "vx", ["dir.x", "dir.y", "dir.z"], config.frequencies)
    for index, layer in enumerate(decoder.colour_net[:-1:2]):  # the bias-free Linear → ReLU pairs
        groups = _linear(code, f"ch{index}", inputs, layer.weight)
        code.apply("relu", groups)
        inputs = _scalars(groups, config.hidden)
    rgb = _linear(code, "crgb", inputs, decoder.colour_net[-1].weight)
    code.line(f"rgb = sigmoid({rgb[0]}.xyz);")
    return ("void decode(vec4 feat[FEATURE_GROUPS], vec3 dir, out float sigma, out vec3 rgb) {\n"
            + "\n".join("    " + line for line in code.lines) + "\n}\n")


class _Code:
    """Straight-line GLSL statements."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def declare(self, name: str, expressions: list[str]) -> list[str]:
        """`vec4 name<i> = expression_i;` for each expression → the variable names."""
        names = [f"{name}{i}" for i in range(len(expressions))]
        self.lines += [f"vec4 {n} = {e};" for n, e in zip(names, expressions)]
        return names

    def apply(self, function: str, names: list[str]) -> None:
        self.lines += [f"{n} = {function}({n});" for n in names]


def _scalars(groups: list[str], count: int) -> list[str]:
    """The first `count` components of a list of vec4 variables, as scalar expressions."""
    return [f"{groups[i // 4]}.{COMPONENTS[i % 4]}" for i in range(count)]


def _pack(code: _Code, name: str, scalars: list[str]) -> list[str]:
    """Scalar expressions → zero-padded vec4 variables."""
    chunks = [scalars[i:i + 4] for i in range(0, len(scalars), 4)]
    return code.declare(name, [f"vec4({', '.join(c + ['0.0'] * (4 - len(c)))})" for c in chunks])


def _encode(code: _Code, name: str, scalars: list[str], frequencies: int) -> list[str]:
    """engine.decoder.frequency_encode: all D values, then sin and cos of 2^k·x for each k, each a block of D."""
    groups = _pack(code, name, scalars)
    encoded = _scalars(groups, len(scalars))
    for k in range(frequencies):
        for function in ("sin", "cos"):
            block = code.declare(f"{name}_{function}{k}_", [f"{function}({g} * {_literal(2.0 ** k)})" for g in groups])
            encoded += _scalars(block, len(scalars))
    return encoded


def _linear(code: _Code, name: str, inputs: list[str], weight: torch.Tensor, bias: torch.Tensor | None = None,
            ) -> list[str]:
    """y = W·x (+ b) → vec4 variables holding y (the last one zero-padded)."""
    w = _array(weight)
    if w.shape[1] != len(inputs):
        raise ValueError(f"{name}: weight has {w.shape[1]} inputs, the code has {len(inputs)}")
    b = _array(bias) if bias is not None else None
    expressions = []
    for start in range(0, w.shape[0], 4):
        block = np.zeros((4, w.shape[1]), np.float32)
        block[: min(4, w.shape[0] - start)] = w[start:start + 4]
        terms = [] if b is None else [_vec4(b[start:start + 4])]
        terms += [f"{x} * {_vec4(block[:, i])}" for i, x in enumerate(inputs) if block[:, i].any()]
        expressions.append(" + ".join(terms) or "vec4(0.0)")
    return code.declare(name, expressions)


def _array(tensor: torch.Tensor) -> np.ndarray:
    values = tensor.detach().to("cpu", torch.float32).numpy()
    if not np.isfinite(values).all():
        raise ValueError("the decoder has non-finite weights; it cannot be compiled to GLSL")
    return values


def _vec4(values: np.ndarray) -> str:
    padded = list(values) + [0.0] * (4 - len(values))
    return f"vec4({', '.join(_literal(v) for v in padded)})"


def _literal(value: float) -> str:
    """The shortest GLSL float literal that reads back as the same float32."""
    text = str(np.float32(value))
    return text if any(c in text for c in ".e") else text + ".0"


def _splice(template: str, parts: dict[str, str]) -> str:
    for mark, text in parts.items():
        if mark not in template:
            raise ValueError(f"shader template lacks the {mark} marker")
        template = template.replace(mark, text)
    return template
