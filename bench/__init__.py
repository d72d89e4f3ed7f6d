"""sharpbench bench: evaluate checkpoints under PGD, AutoAttack and common corruptions."""
