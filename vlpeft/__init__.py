"""vlpeft: a reproducible re-run of "An Empirical Study of Parameter Efficient Fine-tuning on
Vision-Language Pre-train Model" on BLIP, as a thin package under parameterised notebooks."""
__version__ = "0.1.0"
