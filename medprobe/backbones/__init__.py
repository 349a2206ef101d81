"""Backbones: what they are called, how they are built, fed and loaded, and the features they yield.

- `registry`: the named backbones (`BACKBONES`, `get_backbone`, `timm:<model>`), their feature
  kinds, and the words for how they are run and fed (precisions, resize modes); no torch, so the
  CLIs list and check names at once;
- `factory`: `create_backbone` (timm models, headless, seeded), their preprocessing and features;
- `volumes`: MedMNIST v2's ResNet-18 for volumes, its convolutions made 3D, 2.5D or ACS;
- `hub`: the Hugging Face hub switched off at once, with one line, where it cannot be reached;
- `weights`: local weights files read, fitted strictly and identified by their sha256;
- `preprocess`: uint8 batches to the model's input on the device (resize or pad, normalize).

This `__init__` imports nothing: import the module you need.
"""
