"""The deblurring benchmark behind ``evals/restoration.py`` (not part of the library).

``data``: scikit-image photographs, kornia degradations, the held-out test set.
``nets``: the restoration networks (a plain residual CNN and a timm-encoder U-Net).
``objectives``: L1 plus one auxiliary term, the loss variants the design study compares.
"""
