"""The user's verbs, one module each (``fit``, ``evaluate``, ``predict``, ``adapt``, ``demo``, ...): each a short
script of named steps, with the opening and ending the verbs share in :mod:`transferkit.workflows.steps`.

Nothing is imported here, so that ``import transferkit`` stays light; import a verb from its module.
"""
