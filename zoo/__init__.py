"""sharpbench zoo: train CIFAR-scale models with standard, SAM and adversarial-training recipes."""
__version__ = "0.1.0"
