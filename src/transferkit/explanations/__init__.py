"""Explanations of a saved model's predictions: attributions over an input (Grad-CAM, integrated gradients and
SmoothGrad over pixels or a spectrogram; integrated gradients and occlusion over the words of a text), drawn as heat
maps or highlighted text, and checked for faithfulness by deletion and insertion curves against random orders.

The verb is :func:`transferkit.workflows.explain.explain`; each modality's part comes from its registry entry
(``Modality.explainer``). Nothing heavy is imported here.
"""
