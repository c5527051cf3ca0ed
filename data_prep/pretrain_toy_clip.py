"""Pretrain the small offline CLIP (dcsm-toy-ViT) on captioned synthetic scenes (logic: :mod:`dcsm.commands.pretrain_toy_clip`).

    python data_prep/pretrain_toy_clip.py [--config configs/pretrain_toy_clip.yaml] [key=value ...]

Writes ``<out_dir>/dcsm-toy-ViT.safetensors`` (fp16) and ``<out_dir>/dcsm-toy-ViT.record.json``.
Copy both into ``dcsm/weights/`` to ship them (``encoder.model=dcsm-toy-ViT encoder.pretrained=toy``).
"""

from dcsm.commands.runner import run_command

if __name__ == "__main__":
    run_command("dcsm.commands.pretrain_toy_clip")  # checks the config before importing the command (torch, open_clip)
