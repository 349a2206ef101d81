"""End-to-end training: ResNet-18 from scratch, ViT / DINOv2 fine-tuned, LP-FT.

- `config`: a run's options (`TrainConfig`, no torch); `defaults`: the training defaults by family;
- `setup`: a run set up (identity, data, model, optimizer, loss, steps); `build`, `model`: the
  classifier, what is frozen, micro-batches;
- `data`: where a run's images live (memory or a disk copy); `augment`: flips and affine on the
  device;
- `steps`: batches and steps; `checkpoint`: training state that survives kill -9;
- `train`: the loop, top to bottom; `record`: the end of a run (test scored once, its record and
  files); `cli`: the `finetune` program (`program(head_initializer=)`).
"""
