"""engine.config.ConfigMixin through SynthConfig: exact JSON round trips, presets, validation errors naming the field."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from engine.config import ConfigError
from training.synth.config import SynthConfig

NON_DEFAULT = SynthConfig(count=3, views=7, test_views=0, resolution=40, seed=12345, workers=3, fov_degrees=33.5,
                          radius=3.1, target_y=0.125, elevation_min=-10.0, elevation_max=25.0, supersample=3)


@pytest.mark.parametrize("config", [SynthConfig(), NON_DEFAULT, SynthConfig.preset("paper")], ids=["default", "custom",
                                                                                                    "paper"])
def test_round_trip_through_dict_and_json(config):
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-able as is
    assert set(data) == {f.name for f in dataclasses.fields(SynthConfig)}
    again = SynthConfig.from_dict(json.loads(json.dumps(data)))
    assert again == config
    assert again.to_dict() == data
    assert all(type(getattr(again, k)) is type(getattr(config, k)) for k in data)


def test_save_and_load_round_trip_exactly(tmp_path):
    path = tmp_path / "sub" / "synth_config.json"
    NON_DEFAULT.save(path)
    loaded = SynthConfig.load(path)
    assert loaded == NON_DEFAULT
    assert json.loads(path.read_text()) == NON_DEFAULT.to_dict()
    first = path.read_bytes()
    loaded.save(path)
    assert path.read_bytes() == first  # saving is deterministic (sorted keys)
    assert [p.name for p in path.parent.iterdir()] == ["synth_config.json"]  # no temp files left behind


def test_integers_in_json_load_as_floats_for_float_fields():
    config = SynthConfig.from_dict({"fov_degrees": 45, "radius": 3})
    assert config.fov_degrees == 45.0 and isinstance(config.fov_degrees, float)
    assert isinstance(config.radius, float)


def test_load_of_a_broken_file_is_a_config_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config"):
        SynthConfig.load(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        SynthConfig.load(tmp_path / "missing.json")


def test_presets():
    paper = SynthConfig.preset("paper")
    assert (paper.views, paper.resolution, paper.test_views) == (300, 1024, 20)
    tiny = SynthConfig.preset("tiny")
    assert (tiny.views, tiny.resolution, tiny.test_views) == (64, 256, 8)
    assert SynthConfig.preset("paper", count=2, resolution=512) == dataclasses.replace(paper, count=2, resolution=512)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*paper.*tiny"):
        SynthConfig.preset("huge")


def test_unknown_field_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="colour_depth"):
        SynthConfig.from_dict({"views": 4, "colour_depth": 8})
    with pytest.raises(ConfigError, match="resoluton"):
        SynthConfig.preset("tiny", resoluton=64)


def test_from_dict_rejects_a_non_object():
    with pytest.raises(ConfigError, match="expected a JSON object"):
        SynthConfig.from_dict([1, 2])


INVALID = [
    ({"count": 0}, r"count"),
    ({"count": -1}, r"count"),
    ({"views": 0}, r"views"),
    ({"resolution": 7}, r"resolution"),
    ({"resolution": 2048}, r"resolution"),
    ({"resolution": 100}, r"resolution"),  # not a multiple of 8
    ({"test_views": -1}, r"test[_ ]views"),
    ({"workers": 0}, r"workers"),
    ({"fov_degrees": 0.0}, r"fov_degrees"),
    ({"radius": 0.5}, r"radius"),
    ({"elevation_min": 50.0}, r"elevation"),
    ({"elevation_max": 95.0}, r"elevation"),
    ({"supersample": 5}, r"supersample"),
]


@pytest.mark.parametrize("change, field", INVALID, ids=[f"{k}={v}" for c, _ in INVALID for k, v in c.items()])
def test_invalid_values_raise_config_error_naming_the_field(change, field):
    for build in (lambda: SynthConfig(**change), lambda: SynthConfig.from_dict(change),
                  lambda: SynthConfig.preset("tiny", **change), lambda: SynthConfig().replace(**change)):
        with pytest.raises(ConfigError) as info:
            build()
        assert re.search(field, str(info.value)), str(info.value)


@pytest.mark.parametrize("change", [{"resolution": "64"}, {"count": None}])
def test_wrong_types_are_config_errors(change):
    with pytest.raises(ConfigError):
        SynthConfig.from_dict(change)


def test_boundary_values_are_accepted():
    for change in ({"count": 1}, {"views": 1}, {"test_views": 0}, {"resolution": 32}, {"resolution": 1024},
                   {"workers": 1}, {"supersample": 1}, {"supersample": 4}):
        SynthConfig(**change)


def test_output_key_ignores_count_and_workers_only():
    base = SynthConfig()
    assert base.output_key() == SynthConfig(count=99, workers=4).output_key()
    for change in ({"resolution": 128}, {"seed": 1}, {"views": 3}, {"test_views": 1}, {"supersample": 1}):
        assert SynthConfig(**change).output_key() != base.output_key()
