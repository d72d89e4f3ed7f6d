"""Attacks by name (registry) and the AutoAttack driver."""
