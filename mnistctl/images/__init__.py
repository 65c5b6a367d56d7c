"""Pictures of digits: reading any image file safely, and preparing it the way MNIST's digits were. Torch-free."""
