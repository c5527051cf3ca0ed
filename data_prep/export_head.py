"""A trained head -> safetensors + JSON (logic: :mod:`dcsm.commands.export_head`).

    python data_prep/export_head.py export_head.checkpoint=runs/x/checkpoints/best.ckpt export_head.out=exports/x
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.export_head")  # checks the config before importing the command (torch, open_clip)
