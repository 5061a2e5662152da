"""enhanced-tx: a Hydra-configured experiment framework for an enhanced encoder-decoder Transformer."""

__version__ = "0.1.0"
