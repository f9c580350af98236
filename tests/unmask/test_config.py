import pytest

from unmask.config import PRESETS, Config, diff, parse_assignment, preset


def test_yaml_round_trip_keeps_every_value(tmp_path):
    cfg = preset("cpu").replace(**{"gan_optim.betas": [0.4, 0.9], "loss.vgg_layers": ["relu2_1"],
                                   "loss.vgg_weights": [2.0], "train.steps": 7, "generator.use_map": False})
    cfg.save(tmp_path / "c.yaml")
    loaded = Config.load(tmp_path / "c.yaml")
    assert loaded == cfg
    assert loaded.gan_optim.betas == (0.4, 0.9)  # tuples come back as tuples
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_unknown_keys_are_rejected():
    with pytest.raises(KeyError, match="lerning_rate"):
        Config.from_dict({"seg_optim": {"lerning_rate": 1.0}})
    with pytest.raises(KeyError):
        Config().replace(**{"train.nope": 1})


def test_invalid_values_are_rejected():
    with pytest.raises(ValueError, match="multiple of 32"):
        Config().replace(**{"train.resolution": 100})
    with pytest.raises(ValueError, match="use_map"):
        Config().replace(**{"train.gan_maps": "predicted", "generator.use_map": False})
    with pytest.raises(ValueError, match="fractions"):
        Config().replace(**{"seg_optim.lr_milestones": [1000]})
    with pytest.raises(ValueError, match="train.max_bad_samples must be at least 0"):
        Config().replace(**{"train.max_bad_samples": -1})


def test_max_bad_samples_is_set_like_any_key_and_may_change_on_resume():
    from unmask.checkpoint import RESUME_KEYS, resume_problem

    cfg = Config().replace(**dict([parse_assignment("train.max_bad_samples=3")]))
    assert cfg.train.max_bad_samples == 3 and Config().train.max_bad_samples == 10
    state = {**dict.fromkeys(RESUME_KEYS), "config": Config().to_dict()}
    assert resume_problem("seg.pt", state, cfg) is None  # a tolerance, not a training value
    assert "train.seed" in resume_problem("seg.pt", state, cfg.replace(**{"train.seed": 1}))


def test_presets_change_widths_only():
    tiny = preset("tiny")
    assert tiny.mseg.base_width == tiny.generator.base_width == tiny.discriminator.base_width == 8
    assert set(PRESETS) >= {"paper", "cpu", "tiny"}
    assert preset("paper") == Config()
    assert {d.split(":")[0] for d in diff(Config(), tiny)} == set(PRESETS["tiny"])
    # Widths only: the resolution is the dataset's (unmask train), never a preset's.
    assert all(key.endswith(".base_width") for values in PRESETS.values() for key in values)


def test_parse_assignment_reads_yaml_values():
    assert parse_assignment("gan_optim.lr=2e-4") == ("gan_optim.lr", 2e-4)
    assert parse_assignment("gan_optim.betas=[0.5, 0.9]") == ("gan_optim.betas", [0.5, 0.9])
    assert parse_assignment("generator.use_map=false") == ("generator.use_map", False)
    with pytest.raises(ValueError):
        parse_assignment("no_equals_sign")
