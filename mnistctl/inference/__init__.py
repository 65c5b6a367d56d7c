"""Using a trained model: classifiers (PyTorch, ONNX Runtime, ensembles), files, evaluation, metrics, export."""
