"""Write synthetic scenes in each public benchmark's file format (logic: :mod:`dcsm.commands.format_transfer`).

    python data_prep/make_format_transfer.py [--config FILE] format_transfer.out=DIR [format_transfer.rows=200 ...]
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.format_transfer")  # checks the config before importing the command (torch, open_clip)
