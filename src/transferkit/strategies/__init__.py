"""How a model is adapted: linear probe (here), fine-tuning, LoRA, distillation, domain adaptation (later)."""
