"""Downstream evaluation: embeddings, VCF variant scoring, consequences, probing and tasks.

Modules are imported lazily by users (``from hnet_dna.evaluation.embeddings import Embedder``)
so that ``hnet_dna.evaluation`` itself stays cheap to import.
"""
