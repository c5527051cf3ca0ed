"""Public benchmarks: the item type, one loader per format, discovery under a data root, prompt styles."""
