"""vlpeft: a reproducible re-run of "An Empirical Study of Parameter Efficient Fine-tuning on
Vision-Language Pre-train Model" on BLIP, as a thin package under parameterised notebooks."""
import os

from . import numerics

# Nothing downloads at run or test time. huggingface_hub reads these when it is first imported, so they are set
# here, before any vlpeft module imports transformers (vlpeft.blip.models also passes local_files_only).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# One config, one number on any machine: the instruction-set caps are set before torch is imported (numerics.py).
numerics.pin_environment()

__version__ = "0.1.0"
