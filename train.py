"""Train a DCSM scorer: ``python train.py [--config configs/smoke.yaml] [key=value ...]``."""

from dcsm.cli import run_cli, train_main

if __name__ == "__main__":
    run_cli(train_main)
