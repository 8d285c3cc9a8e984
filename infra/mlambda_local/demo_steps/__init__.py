"""Demo steps, one module per feature, each exposing ``STEPS: list[DemoStep]``."""
