"""Image-caption pairs -> multiple-choice WebDataset shards (logic: :mod:`dcsm.commands.pair_shards`).

    python data_prep/make_pair_shards.py [--config FILE] pair_shards.input=pairs.json pair_shards.out=DIR
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.pair_shards")  # checks the config before importing the command (torch, open_clip)
