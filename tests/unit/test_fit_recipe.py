"""One fit recipe (``core.retraining.FitRecipe``): training's ``FitConfig`` is one,
``python -m training fit`` takes its defaults from it, and its command line (``fit_args``)
is read back by ``fit`` as the same recipe."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from training.__main__ import build_parser
from training.fit import FitConfig
from training.fit_command import fit_config
from yawbcc_desktop.core.classifier import CARD_FILE, resource_root
from yawbcc_desktop.core.retraining import FIT_DEFAULTS, LITE0_FAST, FitRecipe

ODD = FitRecipe(
    backbone="mobilenetv2",
    input_size=96,
    cell_field=256,
    balance=False,
    weights="none",
    batch_size=8,
    epochs_frozen=0,
    epochs_fine=3,
    lr_fine=1.2345678e-5,
    fine_tune_layers=-1,
    class_weighting="sqrt",
    augment="light",
    train_bn=True,
    seed=7,
)


def parsed(*args: str) -> FitConfig:
    """The ``FitConfig`` that ``python -m training fit ARGS`` trains with."""
    return fit_config(build_parser().parse_args(["fit", "--out", "run", *args]), split_sha1="x")


def test_fit_without_options_trains_the_recipe_defaults():
    config = parsed()
    assert config.recipe() == FIT_DEFAULTS == FitConfig().recipe() == FitRecipe()
    assert (config.input_size, config.epochs_fine, config.lr_fine) == (160, 8, 3e-4)
    assert config.extra == {"split_sha1": "x"}


def test_fit_config_is_the_recipe_plus_what_only_training_sets():
    config = FitConfig(**vars(LITE0_FAST), lr_frozen=2e-3)
    assert isinstance(config, FitRecipe) and config.recipe() == LITE0_FAST
    assert (config.lr_frozen, config.patience, config.extra) == (2e-3, 3, {})
    assert type(config.recipe()) is FitRecipe


@pytest.mark.parametrize("recipe", [FIT_DEFAULTS, LITE0_FAST, ODD, replace(ODD, fine_tune_layers=None, lr_fine=4e-4)])
def test_the_command_line_of_a_recipe_is_read_back_as_that_recipe(recipe):
    assert parsed(*recipe.fit_args()).recipe() == recipe


def test_the_command_line_names_every_option():
    args = LITE0_FAST.fit_args()
    flag = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--") and not args[i + 1].startswith("--")}
    assert flag["--backbone"] == "efficientnet-lite0" and flag["--size"] == "128" and flag["--field"] == "288"
    assert flag["--epochs-frozen"] == "1" and flag["--epochs"] == "7" and flag["--lr"] == "0.0004"
    assert flag["--class-weighting"] == "balanced" and flag["--augment"] == "full" and flag["--weights"] == "imagenet"
    assert "--balance" in args and "--no-train-bn" in args and "--fine-tune-layers" not in args
    assert ODD.fit_args()[-2:] == ["--fine-tune-layers", "-1"] and "--no-balance" in ODD.fit_args()


def test_the_two_presets_differ_only_where_lite0_fast_does():
    assert replace(LITE0_FAST, input_size=160, epochs_fine=8, lr_fine=3e-4) == FIT_DEFAULTS
    assert LITE0_FAST.epochs == 8 and FIT_DEFAULTS.epochs == 9


def card_training(name: str) -> dict:
    return json.loads((resource_root() / "models" / name / CARD_FILE).read_text(encoding="utf-8"))["training"]


def test_lite0_fast_is_the_bundled_lite0_fast_models_recipe():
    assert FitRecipe.from_card_training(card_training("lite0-fast")) == LITE0_FAST


def test_a_card_training_block_gives_its_recipe():
    accurate = FitRecipe.from_card_training(card_training("lite0-accurate"))
    assert accurate == replace(FIT_DEFAULTS, epochs_fine=6, lr_fine=4e-4, class_weighting="sqrt", augment="light", train_bn=True)
    old = FitRecipe.from_card_training({"input_size": 128, "epochs": 5, "class_weighting": False, "patience": 2})
    assert old == replace(FIT_DEFAULTS, input_size=128, epochs_fine=5, class_weighting="none")


def test_the_recipe_module_loads_neither_tensorflow_nor_qt():
    code = (
        "import sys, yawbcc_desktop.core.retraining as r; r.LITE0_FAST.fit_args(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'PySide6', 'training') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
