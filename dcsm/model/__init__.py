"""The forward path: frozen encoder, feature batch, functional rows, maps, CNN, DCSM = encoder + head, heatmaps."""
