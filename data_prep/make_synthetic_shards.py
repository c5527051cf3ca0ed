"""Write synthetic scenes to WebDataset shards (logic: :mod:`dcsm.commands.synthetic_shards`).

    python data_prep/make_synthetic_shards.py [--config FILE] synthetic_shards.out=DIR synthetic_shards.num_samples=N
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.synthetic_shards")  # checks the config before importing the command (torch, open_clip)
