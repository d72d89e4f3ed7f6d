"""The study as a grid of cells shared by workers: presets, cells, the work queue, launchers, status."""
