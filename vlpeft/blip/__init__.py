"""BLIP itself: loading caption and VQA models and their processor from a checkpoint folder (real BLIP or the
embedded tiny one, one path), and converting BLIP's original pre-training checkpoint into such folders."""
