"""The study layer, above the core: presets (the grids of runs), the papermill engine and its executors, the
runs → results table, the claims, the figures and the report."""
