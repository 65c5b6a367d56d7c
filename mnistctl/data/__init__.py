"""The data sets on disk: download from mirrors, IDX files, and the train/val/test splits as uint8 tensors."""
