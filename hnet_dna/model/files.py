"""The file names of a model folder (a leaf: the modules that write, check and find model
folders all import these names from here, and this module imports nothing)."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FOLDER_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)

__all__ = ["CARD_NAME", "CONFIG_NAME", "FOLDER_FILES", "WEIGHTS_NAME"]
