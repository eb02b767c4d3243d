"""The worlds a study runs in: the synthetic shapes world (written in the real MSCOCO/VQAv2 formats), the
pre-training of the embedded tiny BLIP on it, and the one route that prepares a world's assets (`assets`)."""
