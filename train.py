"""Train a DCSM scorer: ``python train.py [--config configs/smoke.yaml] [key=value ...]``."""

from dcsm.commands.train import main
from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command(main)
