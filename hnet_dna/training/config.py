"""Training configuration dataclasses (the schema behind the hydra YAML in ``hnet_dna/conf``).

Per-stage values are lists indexed by stage (stage 0 = bases); a one-element list is shared by
all stages. The model section stays a plain mapping validated by ``HNetConfig.from_dict`` because
its nested ``arch_layout`` cannot be typed by OmegaConf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OptimConfig:
    """AdamW settings. ``lr`` is the base-pair-resolution (stage 0) learning rate."""

    lr: float = 5e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    # Embeddings (and the zero-initialised width-padding vectors) decay only when asked.
    weight_decay_embeddings: bool = False
    # Per-stage LR multipliers; None = paper eq. (11) from target ratios and widths.
    lr_multipliers: list[float] | None = None
    # N_GPT of eq. (11): base units per token of the reference model (4.6 bytes for GPT-2 text).
    # With 1.0 and equal widths (the paper's DNA models) stage 0 runs at ``lr`` exactly; eq. (11)
    # is relative to the innermost width, so a wider inner stage raises stage 0 by sqrt(D_S/D_0).
    lr_reference_ratio: float = 1.0
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables clipping


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: ``wsd`` (warmup-stable-decay), ``cosine`` or ``constant``."""

    name: str = "wsd"
    warmup_fraction: float = 0.1
    decay_fraction: float = 0.2  # wsd only: the last fraction of steps decays
    decay_shape: str = "1-sqrt"  # wsd only: 1-sqrt | linear | cosine
    min_lr_ratio: float = 0.0  # final LR as a fraction of the peak


@dataclass
class LossConfig:
    ratio_alpha: float = 0.03
    # Target compression N per stage (one value = shared by all stages).
    target_ratio: list[float] = field(default_factory=lambda: [3.0])


@dataclass
class CheckpointConfig:
    every: int = 0  # steps between checkpoints; 0 = only at the end
    keep_last: int = 2


@dataclass
class DistributedConfig:
    strategy: str = "ddp"  # ddp | fsdp (used only when WORLD_SIZE > 1)
    backend: str = "auto"  # auto = nccl on CUDA, gloo on CPU
    # Module class names that FSDP shards individually (the rest goes to the root unit).
    fsdp_unit_classes: list[str] = field(default_factory=lambda: ["Block"])


@dataclass
class TrainerConfig:
    max_steps: int = 300
    grad_accum: int = 1  # micro-batches per optimizer step (per rank)
    log_every: int = 10
    eval_every: int = 0  # 0 = evaluate only at the end
    eval_max_batches: int | None = None  # None = the whole tiled held-out set (exact)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    # Progress on rank 0: a tqdm bar on a terminal, else a plain line every progress_interval
    # seconds (None: $HNET_DNA_PROGRESS_INTERVAL or 30 s; see hnet_dna.progress).
    progress_bar: bool = True
    progress_interval: float | None = None
    # Intra-op threads per rank; None = from the allocation (affinity, SLURM, local ranks) or
    # OMP_NUM_THREADS (see hnet_dna.training.resources).
    threads: int | None = None
    baselines: bool = True  # Markov reference numbers on the held-out bases at the end
    markov_order: int = 8
    # Mb of training windows the baselines are fitted on: all of a smaller training split, else
    # this many spread evenly over it (the fit runs at a few Mb/s: seconds at any genome size)
    markov_fit_mb: float = 8.0
    # Resume even when the data settings that fix the training stream and the held-out set
    # (data section, seed, grad_accum, eval_max_batches) differ from the run folder's (logged).
    allow_data_change: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class DataConfig:
    """Which corpus and how windows are drawn from it (see ``hnet_dna.genomics``)."""

    # A named corpus (yeast_chrI, fly_chr4, arabidopsis_chr1) or the path of any FASTA (plain or
    # bgzip), split positionally 80/10/10 per contig unless ``bed`` gives the splits.
    corpus: str = "yeast_chrI"
    bed: str | None = None  # BED of splits for a FASTA corpus: chrom, start, end, train|valid|test
    context_length: int = 1024  # bases per window
    batch_size: int = 8  # windows per micro-batch per rank
    eval_batch_size: int = 8
    samples_per_epoch: int = 100_000  # random training windows per epoch (all ranks together)
    softmask_weight: float = 0.1  # training loss weight of lowercase (repeat) bases
    rc_prob: float = 0.5  # reverse-complement augmentation probability
    max_n_fraction: float = 0.1  # training windows with more N are skipped
    # DataLoader workers per rank; None = from the allocation (none on the CPU, up to 4 on an
    # accelerator; see hnet_dna.training.resources).
    num_workers: int | None = None
    train_split: str = "train"
    eval_split: str = "valid"


@dataclass
class PretrainConfig:
    model: Any = None  # HNetConfig fields as a mapping
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    # None = resume when the run folder holds a checkpoint; True = require one; False = never.
    resume: bool | None = None
    run_dir: str | None = None  # None = hydra's output folder (runs/<date>/<time>)
