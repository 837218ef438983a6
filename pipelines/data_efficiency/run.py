"""Data-efficiency sweep (hydra multirun): models x corpora, fixed base budget, periodic eval.

    python pipelines/data_efficiency/run.py -m preset=cpu_tiny
    python pipelines/data_efficiency/aggregate.py --root pipelines/data_efficiency/runs/cpu_tiny

Finished runs are skipped and interrupted ones resume, so the same command continues a sweep.
"""

import hydra
from omegaconf import DictConfig

from hnet_dna.baselines.sweep import sweep_task


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return sweep_task(cfg)


if __name__ == "__main__":
    main()
