"""The training pipeline's stages: prepare -> augment -> train -> evaluate -> register -> cleanup.

STAGE_ORDER is the one list that the leases (runs.py), the task chain (services.launch_pipeline, tasks.py) and
the models read. No Django import here, so any module can import it (models.py imports it; the stages' modules,
which import the models, are imported by name: data.py (prepare, augment), training.py (train), quality.py
(evaluate), finish.py (register, cleanup)). Each stage is a body that :func:`apps.generators.runs.run_stage` runs
with the run and a scratch folder; it reads and writes the run's files (handoff.py).
"""

STAGE_ORDER = ("prepare", "augment", "train", "evaluate", "register", "cleanup")
