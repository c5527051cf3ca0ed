"""Train a DCSM scorer: ``python train.py [--config configs/smoke.yaml] [key=value ...]``."""

import logging

from dcsm.cli import train_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train_main()
