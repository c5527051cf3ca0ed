"""Evaluate a checkpoint: ``python evaluate.py eval.checkpoint=PATH [key=value ...]``."""

import logging

from dcsm.cli import evaluate_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    evaluate_main()
