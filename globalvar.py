"""The dataset every command uses (`--dataset NAME|path/to/description.py` overrides it).

DATASET names a description of deeppose/datasets/ (K2HPD, LSP, FLIC) or a description file
(Python defining `DATASET = DatasetDescription(...)`, see deeppose/dataset.py).
"""

DATASET = "K2HPD"
