"""Raw shards -> feature shards with the frozen encoder (logic: :mod:`dcsm.commands.cache_features`).

    python data_prep/cache_features.py [--config FILE] cache_features.shards=DIR cache_features.out=FEATDIR [encoder.*=...]
"""

from dcsm.commands.cache_features import main
from dcsm.features.writer import cache_shards  # noqa: F401  (the writer, for scripts that import it from here)
from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command(main)
