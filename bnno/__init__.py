"""bnno: reproduce and extend "Latent Weights Do Not Exist: Rethinking Binarized
Neural Network Optimization" (Helwegen et al., NeurIPS 2019, arXiv:1906.02107).

Importing this package is cheap: TensorFlow is imported only by the modules that
need it (``bnno.nn``, models, training), never by ``bnno`` itself or ``bnno --help``.
"""

__version__ = "0.1.0"


def register_model(name: str, **keys):
    """Register a model builder from your own code (a plugin: ``--plugin FILE``, the
    ``BNNO_PLUGINS`` variable, or the ``bnno.plugins`` entry-point group)::

        import bnno

        @bnno.register_model("my_net", filters=64)
        def build(hparams, input_shape, num_classes):
            ...  # hparams["filters"]: the set's value, or 64
            return keras.Model(inputs, outputs)

    ``keys`` are the architecture keys the builder reads, with their defaults, as bnno's
    own models declare theirs (``bnno.models.register``). A name bnno or another plugin
    already uses is refused."""
    from bnno.models import register_model as register

    return register(name, **keys)


def register_preprocess(name: str, *datasets: str):
    """Register a preprocess function from your own code (see ``bnno.data.preprocess``:
    a factory that takes the stored images' ``ImageSpec`` and returns a ``Preprocess``),
    for ``bnno train --preprocess-fn NAME``; for the ``datasets`` named (those with
    functions of their own: cifar10, imagenet2012) or, without any, for every other data
    set and image folder. Imports TensorFlow. A name already taken is refused."""
    from bnno.data import preprocess

    return preprocess.register_plugin(name, *datasets)
