"""Configuration: the paper's command lines, precedence, errors and the dump/reload round trip."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO_ROOT
from utils.config import (
    ALL_FLAGS,
    ORIGINAL_FLAGS,
    ConfigError,
    config_differences,
    config_to_dict,
    default_config,
    dump_config,
    get_args_parser,
    load_config,
    parse_config,
)

THUMOS_TRAIN = (
    "--model_name Train_Thumos14 --cfg_path ./config/Thumos14_CLIP_zs_75_8frame.yaml --save_result "
    "--batch_size 16 --lr 1e-4 --epochs 100 --postprocess_type class_agnostic --postprocess_topk 100 "
    "--num_queries 40 --enc_layers 2 --dec_layers 5 --actionness_loss_coef 3 --norm_embed --exp_logit_scale "
    "--proposals_weight_type after_softmax --enable_classAgnostic --enable_refine --refine_drop_saResidual "
    "--salient_loss --salient_loss_coef 3"
)
ANET_TRAIN = (
    "--model_name Train_ActivityNet13 --cfg_path ./config/ActivityNet13_CLIP_zs_75.yaml --save_result "
    "--batch_size 16 --target_type prompt --lr 5e-5 --epochs 100 --num_queries 30 --postprocess_type "
    "class_agnostic --postprocess_topk 100 --rescale_length 300 --enc_layers 2 --dec_layers 2 "
    "--enable_backbone --lr_backbone 1e-2 --norm_embed --exp_logit_scale --proposals_weight_type "
    "after_softmax --enable_classAgnostic --actionness_loss_coef 3 --enable_refine --refine_drop_saResidual "
    "--salient_loss"
)
# The test commands are the train commands minus the training-only flags (SPEC §1).
TRAINING_ONLY = {"--lr", "--epochs", "--lr_backbone"}


def _test_command(train: str) -> list[str]:
    words, out, skip = shlex.split(train), [], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in TRAINING_ONLY:
            skip = i + 1 < len(words) and not words[i + 1].startswith("--")
            continue
        out.append(word)
    return out


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def _thumos_expected():
    return dict(dataset_name="Thumos14", split=75, split_id=0, feature_stride=8, rescale_length=0,
                enable_backbone=False, enc_layers=2, dec_layers=5, num_queries=40, lr=1e-4, lr_backbone=1e-5,
                actionness_loss_coef=3.0, salient_loss_coef=3.0, feature_path="./data/Thumos14/CLIP_feature_8frame",
                anno_file_path="./data/Thumos14/Thumos14_annotations.json",
                feature_info_path="./data/Thumos14/CLIP/Thumos14_info_8frame.json",
                description_file_path="./data/Thumos14/Thumos14_description_v6.json", num_classes=20)


def _anet_expected():
    return dict(dataset_name="ActivityNet13", split=75, split_id=0, feature_stride=16, rescale_length=300,
                enable_backbone=True, enc_layers=2, dec_layers=2, num_queries=30, lr=5e-5, lr_backbone=1e-2,
                actionness_loss_coef=3.0, salient_loss_coef=2, feature_path="./data/ActivityNet13/CLIP_feature",
                num_classes=200)


COMMON_HEADLINE = dict(norm_embed=True, exp_logit_scale=True, enable_classAgnostic=True, enable_refine=True,
                       refine_drop_saResidual=True, salient_loss=True, target_type="prompt",
                       proposals_weight_type="after_softmax", prob_type="softmax", pooling_type="average",
                       ROIalign_size=16, ROIalign_strategy="before_pred", refine_fusion_type="ca",
                       refine_cat_type="sum", refine_layer_num=1, batch_size=16, lr_drop=40, clip_max_norm=0.1,
                       weight_decay=1e-4, seed=3552, postprocess_type="class_agnostic", postprocess_topk=100,
                       task="zero_shot", eval_proposal=False, hidden_dim=512, nheads=8, dim_feedforward=2048,
                       dropout=0.1)


@pytest.mark.parametrize("command,expected,train", [
    (THUMOS_TRAIN, _thumos_expected(), True),
    (THUMOS_TRAIN, _thumos_expected(), False),
    (ANET_TRAIN, _anet_expected(), True),
    (ANET_TRAIN, _anet_expected(), False),
])
def test_paper_command_lines_resolve_to_documented_values(command, expected, train):
    argv = shlex.split(command) if train else _test_command(command)
    cfg = parse_config(argv + ["--device", "cpu"])
    for key, value in {**COMMON_HEADLINE, **expected}.items():
        if not train and key in {"lr", "lr_backbone"}:
            continue
        assert getattr(cfg, key) == value, key
    assert cfg.save_result is True
    assert cfg.device == "cpu"


def test_original_defaults_and_types():
    cfg = default_config(device="cpu")
    assert cfg.seed == 3552 and cfg.num_queries == 15 and cfg.enc_layers == 6 and cfg.slice_size == 128
    assert cfg.inference_slice_overlap == 0.25 and cfg.lr_drop == 40 and cfg.pooling_type == "average"
    parser = get_args_parser()
    parsed = parser.parse_args(["--bbox_loss_coef", "5.5", "--num_queries", "7", "--norm_embed"])
    assert parsed.bbox_loss_coef == 5.5 and parsed.num_queries == 7 and parsed.norm_embed is True


def test_device_defaults_to_cuda_when_available_else_cpu():
    import torch

    assert parse_config([]).device == ("cuda" if torch.cuda.is_available() else "cpu")


def _write_yaml(tmp_path, values, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_precedence_explicit_flag_beats_yaml_beats_default(tmp_path):
    cfg_path = _write_yaml(tmp_path, {"split": 50, "num_queries": 33, "lr": 0.5})
    cfg = parse_config(["--cfg_path", cfg_path, "--split", "75", "--device", "cpu"])
    assert cfg.split == 75  # explicit flag wins over the YAML
    assert cfg.num_queries == 33 and cfg.lr == 0.5  # YAML wins over the defaults
    assert cfg.enc_layers == 6  # untouched default
    # an explicit flag equal to the default still counts as explicit
    cfg = parse_config(["--cfg_path", cfg_path, "--num_queries", "15"])
    assert cfg.num_queries == 15


def test_explicit_switch_beats_yaml_false(tmp_path):
    cfg_path = _write_yaml(tmp_path, {"norm_embed": False})
    assert parse_config(["--cfg_path", cfg_path]).norm_embed is False
    assert parse_config(["--cfg_path", cfg_path, "--norm_embed"]).norm_embed is True


def test_unknown_yaml_key_names_file_key_and_suggestions(tmp_path):
    cfg_path = _write_yaml(tmp_path, {"num_querys": 10})
    with pytest.raises(ConfigError) as error:
        parse_config(["--cfg_path", cfg_path])
    message = str(error.value)
    assert cfg_path in message and "num_querys" in message and "num_queries" in message


@pytest.mark.parametrize("key,value,expected", [
    ("num_queries", "ten", "an integer"),
    ("num_queries", 1.5, "an integer"),
    ("norm_embed", "yes", "a boolean"),
    ("lr", "fast", "a number"),
    ("postprocess_type", "nms", "class_agnostic"),
    ("split", 60, "[75, 50]"),
    ("dataset_name", None, "a string"),
])
def test_wrong_type_or_choice_names_key_and_expectation(tmp_path, key, value, expected):
    cfg_path = _write_yaml(tmp_path, {key: value})
    with pytest.raises(ConfigError) as error:
        parse_config(["--cfg_path", cfg_path])
    assert key in str(error.value) and expected in str(error.value)


def test_yaml_int_accepted_for_float_flag(tmp_path):
    cfg = parse_config(["--cfg_path", _write_yaml(tmp_path, {"lr": 1})])
    assert cfg.lr == 1


def test_missing_cfg_file_is_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(["--cfg_path", str(tmp_path / "nope.yaml")])


def test_dump_and_reload_gives_the_same_run(tmp_path):
    cfg = parse_config(shlex.split(THUMOS_TRAIN) + ["--device", "cpu", "--split_id", "3"])
    path = dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(path)
    original, reloaded = config_to_dict(cfg), config_to_dict(again)
    original.pop("cfg_path"), reloaded.pop("cfg_path")
    assert original == reloaded
    assert set(original) == set(ALL_FLAGS) - {"cfg_path"}


def test_release_yaml_files_have_release_keys():
    for name in ["Thumos14_CLIP_zs_75_8frame", "Thumos14_CLIP_zs_50_8frame", "ActivityNet13_CLIP_zs_75",
                 "ActivityNet13_CLIP_zs_50"]:
        values = yaml.safe_load((REPO_ROOT / "config" / f"{name}.yaml").read_text())
        assert values["split"] == int(name.split("_zs_")[1][:2])
        assert values["feature_path"].startswith("./data/")
        assert values["task"] == "zero_shot" and values["feature_type"] == "CLIP"
        is_thumos = name.startswith("Thumos14")
        assert ("norm_embed" in values) == is_thumos and ("exp_logit_scale" in values) == is_thumos


# SPEC §1.2: the release's YAML files, key for key (feature_path moved under ./data/, as issue 2 asks).
_THUMOS_YAML = dict(task="zero_shot", exp_logit_scale=True, norm_embed=True, dataset_name="Thumos14",
                    anno_file_path="./data/Thumos14/Thumos14_annotations.json",
                    feature_info_path="./data/Thumos14/CLIP/Thumos14_info_8frame.json",
                    description_file_path="./data/Thumos14/Thumos14_description_v6.json",
                    feature_path="./data/Thumos14/CLIP_feature_8frame", feature_stride=8, feature_type="CLIP",
                    num_classes=20)
_ANET_YAML = dict(task="zero_shot", dataset_name="ActivityNet13",
                  anno_file_path="./data/ActivityNet13/ActivityNet13_annotations.json",
                  feature_info_path="./data/ActivityNet13/CLIP/ActivityNet13_info.json",
                  description_file_path="./data/ActivityNet13/ActivityNet13_description_v6.json",
                  feature_path="./data/ActivityNet13/CLIP_feature", feature_stride=16, feature_type="CLIP",
                  num_classes=200)


@pytest.mark.parametrize("name,expected", [
    ("Thumos14_CLIP_zs_75_8frame", {**_THUMOS_YAML, "split": 75}),
    ("Thumos14_CLIP_zs_50_8frame", {**_THUMOS_YAML, "split": 50}),
    ("ActivityNet13_CLIP_zs_75", {**_ANET_YAML, "split": 75}),
    ("ActivityNet13_CLIP_zs_50", {**_ANET_YAML, "split": 50}),
])
def test_release_yaml_files_equal_the_release(name, expected):
    values = yaml.safe_load((REPO_ROOT / "config" / f"{name}.yaml").read_text())
    assert values == expected


@pytest.mark.parametrize("script", ["main.py", "test.py"])
def test_every_flag_is_listed_in_help_of_both_scripts(script):
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                               cwd=REPO_ROOT, check=True).stdout
    missing = [name for name in ALL_FLAGS if f"--{name} " not in help_text and f"--{name}\n" not in help_text]
    assert not missing and {flag.name for flag in ORIGINAL_FLAGS} <= set(ALL_FLAGS)


def test_dump_leaves_out_resume(tmp_path):
    cfg = default_config(device="cpu", model_name="m", resume="ckpt/Thumos14/state_m.pt")
    path = dump_config(cfg, tmp_path / "resolved.yaml")
    assert "resume" not in yaml.safe_load(path.read_text())
    assert load_config(path).resume is None and load_config(path).model_name == "m"


def test_config_differences_for_resume():
    saved = config_to_dict(default_config(device="cpu", lr=1e-4, epochs=10, num_workers=1))
    now = default_config(device="cuda", lr=5e-5, epochs=20, num_workers=4, resume="state.pt")
    assert config_differences(saved, now) == {"lr": (1e-4, 5e-5), "epochs": (10, 20)}
    assert config_differences({"lr": 5e-5, "unknown_old_key": 1}, now) == {}


def _paper_argv(train: bool, dataset: str) -> list[str]:
    command = THUMOS_TRAIN if dataset == "Thumos14" else ANET_TRAIN
    return (shlex.split(command) if train else _test_command(command)) + ["--device", "cpu", "--num_workers", "0"]


def _paper_workdir(root, release=None):
    """A working folder like a user's clone: ./config from the repository, ./data and ./splits from `release`."""
    (root / "config").symlink_to(REPO_ROOT / "config")
    if release is not None:
        (root / "data").mkdir()
        for dataset in ("Thumos14", "ActivityNet13"):
            (root / "data" / dataset).symlink_to(release / "data" / dataset)
        (root / "splits").symlink_to(release / "splits")
    return root


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dataset", ["Thumos14", "ActivityNet13"])
def test_paper_commands_run_until_a_clear_missing_data_error(tmp_path, monkeypatch, train, dataset):
    import main as train_main
    import test as test_main

    monkeypatch.chdir(_paper_workdir(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"annotation file data/{dataset}/{dataset}_annotations.json"):
        (train_main if train else test_main).main(_paper_argv(train, dataset))


@pytest.mark.fidelity
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dataset", ["Thumos14", "ActivityNet13"])
def test_paper_commands_with_release_files_stop_at_the_missing_features(release_dir, tmp_path, monkeypatch, train,
                                                                         dataset):
    """With the release's annotation/info/description/split files in place, the paper's commands get as far as
    the feature files (not shipped) and name them, before writing anything."""
    import main as train_main
    import test as test_main

    monkeypatch.chdir(_paper_workdir(tmp_path, release_dir))
    folder = "CLIP_feature_8frame" if dataset == "Thumos14" else "CLIP_feature"
    with pytest.raises(FileNotFoundError, match=f"feature files are missing under data/{dataset}/{folder}"):
        (train_main if train else test_main).main(_paper_argv(train, dataset))
    assert not (tmp_path / "logs").exists() and not (tmp_path / "ckpt").exists()
