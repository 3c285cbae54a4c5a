"""The training pipeline's stages, in order: the one list that the pipeline, the task chain and the models read.

No Django import here, so any module can import it (models.py cannot import pipeline.py, which imports it).
"""

STAGE_ORDER = ("prepare", "augment", "train", "evaluate", "register", "cleanup")
