"""Knowledge distillation: losses, the trainer and the distill stage."""
