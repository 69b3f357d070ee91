"""bnno: reproduce and extend "Latent Weights Do Not Exist: Rethinking Binarized
Neural Network Optimization" (Helwegen et al., NeurIPS 2019, arXiv:1906.02107).

Importing this package is cheap: TensorFlow is imported only by the modules that
need it (``bnno.nn``, models, training), never by ``bnno`` itself or ``bnno --help``.
"""

__version__ = "0.1.0"
