"""Evaluate a checkpoint: ``python evaluate.py eval.checkpoint=PATH [eval.benchmark=whatsup ...] [key=value ...]``."""

from dcsm.cli import evaluate_main, run_cli

if __name__ == "__main__":
    run_cli(evaluate_main)
