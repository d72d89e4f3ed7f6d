"""The resolved training configuration: every default filled in, frozen, stored verbatim in each checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch

from zoo.pgd import check_norm, parse_eps
from zoo.recipes import RECIPES

# torch.compile modes for the whole step ("" = not compiled as a whole)
COMPILE_STEP_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# PGD-AT defaults per norm when the user gives none: (eps, steps); alpha defaults to eps/4
AT_DEFAULTS = {"Linf": ("8/255", 10), "L2": ("0.5", 10)}


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "preact_resnet18"  # timm name or a registered classic
    recipe: str = "standard"  # key of zoo.recipes.RECIPES
    data: str = "digits"  # dataset spec, see zoo.data
    data_dir: str = "data"  # where cifar10 is downloaded
    n_train: int | None = None  # first N training images; None = all
    image_size: int | None = None  # folder:DIR only: pixels a side (shorter side resized, centre crop); None = own
    epochs: int = 100  # passes over the training set
    batch_size: int = 128  # images per step (per process under torchrun)
    lr: float = 0.1  # peak SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty added by SGD
    schedule: str = "piecewise"  # piecewise (x0.1 at 75%, x0.01 at 90% of epochs) | cosine
    # weight-space radius of SAM and its variants; None = the recipe's paper's (SAM, LookSAM, ESAM, GSAM: 0.05;
    # MSAM: 3.0) or ASAM's 0.5 (Kwon et al.)
    rho: float | None = None
    adaptive: bool = False  # ASAM: perturbation scaled by T_w = |w| + 0.01 on weight tensors
    looksam_k: int = 5  # LookSAM: a full SAM step every k steps (Liu et al.'s k)
    looksam_alpha: float = 0.7  # LookSAM: weight of the reused orthogonal direction, relative to ||g||
    esam_beta: float = 0.6  # ESAM: fraction of the weights the ascent perturbs (each kept with this probability)
    esam_gamma: float = 0.5  # ESAM: fraction of the batch the second gradient is taken on
    gsam_alpha: float = 0.2  # GSAM: weight of the plain gradient's part orthogonal to SAM's, subtracted
    rwp_sigma: float = 0.01  # m-RWP: noise std, relative to each filter's norm
    rwp_lambda: float = 0.5  # m-RWP: weight of the perturbed gradient in the mix
    beta: float = 6.0  # TRADES: weight of the KL term (Zhang et al.'s CIFAR-10 value)
    gamma: float = 5e-3  # AWP: weight perturbation per layer, relative to the layer's norm (Wu et al.)
    norm: str = "Linf"  # PGD-AT threat model
    eps: str = ""  # PGD-AT radius in input space, e.g. "8/255"; "" = the norm's default
    alpha: str = ""  # PGD-AT step size; "" = the recipe's fraction of eps (eps/4; fgsm_rs: 1.25 eps)
    steps: int = 0  # PGD-AT steps; 0 = the recipe's (fgsm_rs: 1), else the norm's default
    seed: int = 0  # seeds weights, data order, augmentation and attack starts
    device: str = "auto"  # auto = cuda if available else cpu
    amp: str = ""  # bf16 | off: torch.autocast to bfloat16 on the training device; "" = bf16 on CUDA, off elsewhere
    channels_last: bool | None = None  # NHWC memory format; None = on CUDA only
    compile: str = ""  # torch.compile backend (inductor, aot_eager, ...); "" = eager
    # torch.compile the whole training step (forward, backward, the recipe's extra passes and attack, the optimizer
    # update) with this mode: "" = off, "default", "reduce-overhead" (CUDA graphs), "max-autotune"; backend from
    # `compile` (inductor when empty)
    compile_step: str = ""
    # the short last batch of each epoch is dropped (shuffled anew each epoch, so every image is still seen):
    # every step then has one shape, and a compiled step never recompiles for it
    drop_last: bool = True
    out: str = "zoo"  # folder the checkpoint is written to

    def resolved(self) -> "TrainConfig":
        """Fill recipe defaults so the stored config says exactly what ran."""
        check_norm(self.norm)
        if self.schedule not in ("piecewise", "cosine"):
            raise ValueError(f"unknown --schedule {self.schedule!r}; choose piecewise or cosine")
        eps, steps = AT_DEFAULTS[self.norm]
        eps = self.eps or eps
        parse_eps(eps)
        recipe = RECIPES.get(self.recipe)  # an unknown name is refused where the recipe is looked up
        alpha = self.alpha or f"{(recipe.alpha_of_eps if recipe else 0.25) * parse_eps(eps):.8g}"
        steps = (recipe.attack_steps if recipe else 0) or steps
        parse_eps(alpha)
        default_rho = recipe.rho if recipe is not None and recipe.rho is not None else 0.05
        rho = self.rho if self.rho is not None else (0.5 if self.adaptive else default_rho)
        if self.looksam_k < 1 or not 0 < self.esam_beta <= 1 or not 0 < self.esam_gamma <= 1:
            raise ValueError("--looksam-k must be at least 1, and --esam-beta and --esam-gamma in (0, 1]")
        if self.compile_step not in COMPILE_STEP_MODES:
            raise ValueError(f"unknown --compile-step {self.compile_step!r}; choose one of "
                             f"{', '.join(m for m in COMPILE_STEP_MODES if m)}")
        if self.amp not in ("", "bf16", "off"):
            raise ValueError(f"unknown --amp {self.amp!r}; choose bf16 or off")
        cuda = self.device.startswith("cuda") or (self.device == "auto" and torch.cuda.is_available())
        amp = self.amp or ("bf16" if cuda else "off")
        channels_last = cuda if self.channels_last is None else self.channels_last
        return replace(self, eps=eps, alpha=alpha, steps=self.steps or steps, rho=rho, amp=amp,
                       channels_last=channels_last)

    @property
    def eps_value(self) -> float:
        return parse_eps(self.eps)

    @property
    def alpha_value(self) -> float:
        return parse_eps(self.alpha)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
