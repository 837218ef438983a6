"""hnet_dna: tokenizer-free hierarchical (H-Net) DNA language models."""

__version__ = "0.1.0"
