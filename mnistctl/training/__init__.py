"""Training a run: planning it, the loop, logs, torchrun groups, CUDA graphs, and interrupts."""
