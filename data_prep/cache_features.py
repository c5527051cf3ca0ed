"""Raw shards -> feature shards with the frozen encoder (logic: :mod:`dcsm.commands.cache_features`).

    python data_prep/cache_features.py [--config FILE] cache_features.shards=DIR cache_features.out=FEATDIR [encoder.*=...]
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.cache_features")  # checks the config before importing the command (torch, open_clip)
