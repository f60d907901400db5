"""The detection engine: a plain library (no database) that trains torchvision detectors with the paper's
dampened loss on partially labeled images, predicts the box pool, and scores boxes and images."""
