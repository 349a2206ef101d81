"""End-to-end training: ResNet-18 from scratch, ViT / DINOv2 fine-tuning, the `finetune` CLI."""
