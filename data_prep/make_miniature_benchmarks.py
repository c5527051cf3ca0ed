"""Draw a miniature image set for the real WhatsUp / NegBench files (logic: :mod:`dcsm.commands.miniature_benchmarks`).

    python data_prep/make_miniature_benchmarks.py [--config FILE] miniature_benchmarks.fixtures=../shared/fixtures
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.miniature_benchmarks")  # checks the config before importing the command (torch, open_clip)
