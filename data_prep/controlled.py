"""Diagnostics on the controlled small CLIPs (issue 27; logic: :mod:`dcsm.commands.controlled`).

    python data_prep/controlled.py [controlled.experiments=[center_bias]] [key=value ...]

Writes ``<name>.json``, ``<name>.png`` and ``<name>.md`` per experiment into ``controlled.out_dir``
(default ``docs/diagnostics/controlled``).
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.controlled")  # checks the config before importing the command (torch, open_clip)
