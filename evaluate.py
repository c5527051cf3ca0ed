"""Evaluate a checkpoint: ``python evaluate.py [--config FILE] eval.checkpoint=PATH [eval.benchmark=whatsup ...] [key=value ...]``."""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.evaluate")  # checks the config before importing the command (torch, open_clip)
