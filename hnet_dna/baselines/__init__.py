"""Token-level baselines (k-mer, BPE, base/byte level), counted FLOPs, and the data-efficiency
sweep that compares them with H-Nets on the same held-out bases."""
