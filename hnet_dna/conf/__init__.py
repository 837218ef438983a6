"""Hydra configuration tree of ``hnet-dna`` (a package so hydra can find it when installed)."""
