"""polyglm: a multimodal GLM platform.

Nothing heavy is imported here: importing the package must never load a model or torch.
"""

__version__ = "0.1.0"
