"""The DCSM paper's released training data -> image shards (logic: :mod:`dcsm.commands.from_reference`).

    python data_prep/from_reference.py [--config FILE] reference_data.data_path=DATA reference_data.out=OUT

Knobs: ``configs/from_reference.yaml``.
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.from_reference")  # checks the config before importing the command (torch, open_clip)
