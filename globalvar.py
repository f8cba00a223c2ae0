"""The dataset and the seed every command uses (`--dataset NAME|path/to/description.py` and
`--seed N` override them).

DATASET names a description of deeppose/datasets/ (K2HPD, LSP, FLIC) or a description file
(Python defining `DATASET = DatasetDescription(...)`, see deeppose/dataset.py).

SEED is the run's one seed: the synthetic generator's seed, the stage-1 split and list order, the
refiner's crops (joints chosen, simulated displacements, list order) and the solvers'
`random_seed` (weight fillers, Dropout) are all derived from it, so a run from scratch repeats
its numbers on the same machine.
"""

DATASET = "K2HPD"
SEED = 0
