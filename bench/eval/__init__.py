"""The evaluation: the engine's stages (engine), accuracy under attacks and corruptions (accuracy), the
bucketed forward (forward), models by name (loading), and the study's measures (measures)."""
