"""The recipe registry: each recipe is one `Recipe`, registered by name from the module that defines its step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# the training threat model's settings: what an adversarial recipe adds to its own
ATTACK_SETTINGS = ("norm", "eps", "alpha", "steps")


@dataclass(frozen=True)
class Recipe:
    name: str
    step: Callable
    tag: Callable  # cfg -> the key hyperparameters in the checkpoint name
    summary: str
    adversarial: bool = False  # trains on attacked inputs (its cfg.norm/eps are the training threat model)
    alpha_of_eps: float = 0.25  # the training attack's default step size, a fraction of eps (TrainConfig.resolved)
    attack_steps: int = 0  # the training attack's default steps; 0 = the norm's (zoo.config.AT_DEFAULTS)
    # the TrainConfig fields this recipe reads beyond the ones every recipe reads (the data, schedule, optimizer):
    # a checkpoint's description and the study's cell key name these and no other recipe's
    settings: tuple = ()
    rho: float | None = None  # the default weight-space radius of a recipe that takes --rho (its paper's)
    # forward-backward passes per step on clean inputs, without the training attack's (cfg -> passes): what the
    # study's grid orders its cells by and projects a GPU's hours from
    passes: Callable = lambda cfg: 1.0
    # step index -> the step function of that step, for a recipe whose steps alternate (LookSAM: a full SAM step
    # every k steps); each function is one graph under --compile-step. None: every step is `step`
    step_at: Callable | None = None
    # per-parameter tensors the recipe keeps from one step to the next, held (and saved, and resumed) beside the
    # optimizer's momentum buffers: zoo.optim.SGD(state=...)
    state: tuple = ()

    def step_of(self, cfg, index: int) -> Callable:
        """The step function of the training step with this index (counted from 0 over all epochs)."""
        return self.step if self.step_at is None else self.step_at(cfg, index)

    def all_settings(self) -> tuple:
        return self.settings + (ATTACK_SETTINGS if self.adversarial else ())


RECIPES: dict[str, Recipe] = {}


def register(name: str, tag: Callable, summary: str, adversarial: bool = False, **fields):
    def deco(step):
        RECIPES[name] = Recipe(name, step, tag, summary, adversarial, **fields)
        return step
    return deco


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_settings() -> set:
    """Every field some recipe reads as its own: a recipe that does not read one leaves it at its default."""
    return {s for r in RECIPES.values() for s in r.all_settings()}
