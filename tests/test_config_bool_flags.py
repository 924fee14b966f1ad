"""Boolean switches can be turned off on the command line, also when the YAML of --cfg_path turns them on."""
import pytest

from utils.config import ConfigError, parse_config


@pytest.fixture
def yaml_on(tmp_path):
    path = tmp_path / "on.yaml"
    path.write_text("enable_refine: true\nsalient_loss: true\n")
    return str(path)


@pytest.mark.parametrize("argv, expected", [
    ([], True),
    (["--no-enable_refine"], False),
    (["--enable_refine", "false"], False),
    (["--enable_refine=False"], False),
    (["--enable_refine", "0"], False),
    (["--enable_refine", "true"], True),
    (["--enable_refine"], True),
])
def test_switch_overrides_the_yaml(yaml_on, argv, expected):
    cfg = parse_config(["--cfg_path", yaml_on, *argv])
    assert cfg.enable_refine is expected
    assert cfg.salient_loss is True  # the other switch of the YAML is untouched


def test_switch_off_without_yaml_and_before_other_flags():
    cfg = parse_config(["--enable_backbone", "false", "--lr", "0.001", "--save_result", "--norm_embed", "no"])
    assert cfg.enable_backbone is False and cfg.lr == 0.001 and cfg.save_result is True
    assert cfg.norm_embed is False


def test_a_bad_boolean_value_is_one_clear_error():
    with pytest.raises(ConfigError, match="--enable_refine: expected true or false"):
        parse_config(["--enable_refine=maybe"])
