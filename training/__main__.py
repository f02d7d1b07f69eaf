"""``python -m training <command>``: index, split, fit, evaluate, export, and the runs across
labs (domains, adapt, replay, soup, unet).

This file only parses and dispatches: each command lives in its own module, which adds its
options (``add_arguments``) and runs them (``run``). Every command that writes a folder also
writes its log (``train.log``) and configuration there, so a run can be understood and
repeated later.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from . import (
    adapt_command,
    cell_check,
    dataset_commands,
    domain_command,
    evaluate,
    export_command,
    fit_command,
    replay,
    soup,
    unet,
)


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "index": Command(
        "index a folder of class folders (report tables 2.1, 2.2)",
        dataset_commands.add_index_arguments,
        dataset_commands.run_index,
    ),
    "split": Command(
        "duplicate-aware stratified train/valid/test split, saved as CSV",
        dataset_commands.add_split_arguments,
        dataset_commands.run_split,
    ),
    "fit": Command("two-phase training, calibration and evaluation report", fit_command.add_arguments, fit_command.run),
    "evaluate": Command("evaluate a bundle on one side of a split", evaluate.add_arguments, evaluate.run),
    "export": Command("copy a run's model and card into a bundle folder", export_command.add_arguments, export_command.run),
    "domains": Command(
        "fine-tune a bundle across PBC, BCCD, Bio-Net and LISC (stain-robust, one µm per pixel)",
        domain_command.add_arguments,
        domain_command.run,
    ),
    "adapt": Command(
        "adapt a bundle to a lab from its reviewers' corrections (minutes, no base images needed)",
        adapt_command.add_arguments,
        adapt_command.run,
    ),
    "neighbours": Command(
        "fit a bundle's per-cell check (distance to the training cells of the class called)",
        cell_check.add_arguments,
        cell_check.run,
    ),
    "replay": Command(
        "write a PBC-only bundle's replay sample, so that it can be adapted to a lab (--without LAB: take a lab out of one)",
        replay.add_arguments,
        replay.run,
    ),
    "soup": Command("average the weights of training domains runs from one base into one bundle", soup.add_arguments, soup.run),
    "unet": Command(
        "train the U-Net segmenter across the three labs and evaluate it on held-out fields", unet.add_arguments, unet.run
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """Every command of ``COMMANDS`` as a subcommand with its options."""
    parser = argparse.ArgumentParser(prog="python -m training", description="Retrain YAWBCC's cell classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
