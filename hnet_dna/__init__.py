"""hnet_dna: tokenizer-free hierarchical (H-Net) DNA language models.

``from hnet_dna import HNetConfig, HNetForCausalLM`` is the model API. Those names are imported on
first use, so ``hnet-dna --help`` and the data layer do not pay for the model's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hnet_dna._version import __version__

if TYPE_CHECKING:
    from hnet_dna.model import AttnConfig, HNetConfig, HNetForCausalLM, SSMConfig

__all__ = ["AttnConfig", "HNetConfig", "HNetForCausalLM", "SSMConfig", "__version__"]
_MODEL_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _MODEL_API:
        import hnet_dna.model

        return getattr(hnet_dna.model, name)
    raise AttributeError(f"module 'hnet_dna' has no attribute {name!r}")
