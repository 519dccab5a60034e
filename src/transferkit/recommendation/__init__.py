"""What ``recommend`` is built from: its options (:mod:`.config`), training of the id-only model and of the content
projection (:mod:`.training`), ranking metrics (:mod:`.metrics`) and the held-out evaluation with its verdicts
(:mod:`.evaluation`). The data readers are in :mod:`transferkit.data.interactions`, the model and its folder in
:mod:`transferkit.models.recommender`, the verb in :mod:`transferkit.workflows.recommend`.
"""
