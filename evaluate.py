"""Evaluate a checkpoint: ``python evaluate.py [--config FILE] eval.checkpoint=PATH [eval.benchmark=whatsup ...] [key=value ...]``."""

from dcsm.commands.evaluate import main
from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command(main)
