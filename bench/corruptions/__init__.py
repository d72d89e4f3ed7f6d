"""CIFAR-10-C: the generator, its plain per-image reference, and the official files."""
