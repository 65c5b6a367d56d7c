"""mnistctl: a terminal toolkit for MNIST-sized handwritten-digit classifiers."""

__version__ = "0.1.0"
