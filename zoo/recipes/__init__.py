"""Training recipes. They differ only in their step function; zoo.train owns the one loop.

Each recipe is one `Recipe` in RECIPES, registered by the module that defines its step: clean.py (standard,
SAM/ASAM), adversarial.py (PGD-AT, SAM+AT, TRADES, AWP, FGSM-RS), sam_variants.py (LookSAM, ESAM, GSAM, MSAM,
m-RWP). A new recipe is one function in one of them (or a new module imported here) and its `register` call;
zoo.recipes.functional holds the pieces every step is made of and the contract that keeps it one graph.
"""
from zoo.recipes import adversarial, clean, sam_variants  # noqa: F401  (each registers its recipes)
from zoo.recipes.adversarial import adversarial_batch, awp_perturbation, trades_loss
from zoo.recipes.clean import sam_step, standard_step
from zoo.recipes.functional import forward_at, frozen_forward, global_norm, value_and_grad
from zoo.recipes.registry import RECIPES, Recipe, get_recipe, recipe_settings, register

__all__ = ["RECIPES", "Recipe", "adversarial_batch", "awp_perturbation", "forward_at", "frozen_forward",
           "get_recipe", "global_norm", "recipe_settings", "register", "sam_step", "standard_step",
           "trades_loss", "value_and_grad"]
