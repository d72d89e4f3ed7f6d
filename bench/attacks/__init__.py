"""Attacks by name (registry) and the AutoAttack driver. Each attack's module registers it when imported here."""
from bench.attacks import imported, malt  # noqa: F401  (each registers its attack)
