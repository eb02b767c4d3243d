"""BLIP itself: loading caption and VQA models and their processor from a checkpoint folder (real BLIP or the
embedded tiny one, one path), and converting BLIP's original pre-training checkpoint into such folders.

    checkpoints.py  a checkpoint path checked before torch is imported; is it already fine-tuned on VQA?
    models.py       loading and saving (and the embedded tiny BLIP), with every check a checkpoint must pass
    convert.py      `vlpeft convert-blip`: original checkpoint → OUT/caption, OUT/vqa, OUT/conversion.json
    original.py     the original checkpoint: where it is published, reading it, the sizes its weights say
    keymap.py       which original tensor fills which transformers one
    target.py       the transformers side: processor, BlipConfig, one task model filled and read back
"""
