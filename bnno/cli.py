"""The ``bnno`` command line. Commands parse, call library code and print; no
training logic lives here. TensorFlow is imported inside commands only, so that
``bnno --help`` answers at once."""

import click

from bnno import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnno")
def cli():
    """bnno: binarized neural networks trained with Bop (Helwegen et al., NeurIPS 2019)."""


def main():
    cli()
