"""sharpbench zoo: train CIFAR-scale models with standard, SAM and adversarial-training recipes."""
import warnings

__version__ = "0.1.0"

# timm 1.0.9 (pinned by robustbench) decorates a class in timm/models/hrnet.py with `torch.jit.interface`, which
# current PyTorch deprecates with a FutureWarning at import time; every command would print it. Nothing here
# uses TorchScript, so that one message is silenced before any zoo module imports timm.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.interface` is deprecated", category=FutureWarning)
