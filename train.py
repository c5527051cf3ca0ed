"""Train a DCSM scorer: ``python train.py [--config configs/smoke.yaml] [key=value ...]``."""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.train")  # checks the config before importing the command (torch, open_clip)
