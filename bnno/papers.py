"""The accuracies papers report, each with where in the paper it is printed.

``bnno report`` puts a run next to the paper's figure for the same configuration:
the same model, the same data set (its tensorflow-datasets name, without version)
and the same hyperparameter set. A later paper's figures join ``FIGURES``.

References:
    Helwegen, Widdicombe, Geiger, Liu, Cheng and Nusselder, "Latent Weights Do Not
    Exist: Rethinking Binarized Neural Network Optimization", NeurIPS 2019,
    https://arxiv.org/abs/1906.02107
    Suarez-Ramirez, Gonzalez-Mendoza, Chang, Ochoa-Ruiz and Duran-Vega, "A Bop and
    Beyond: A Second Order Optimizer for Binarized Neural Networks", CVPR 2021
    workshops, https://arxiv.org/abs/2104.05124. Its figures here are taken from its
    code's README (github.com/CuauSuarez/Bop2ndOrder), which prints them as "the
    accuracy in the paper" under the paper's section numbers, with the commands and
    sets that produce them; the paper's own text could not be read, so they are not
    checked against it.
"""

import dataclasses
import os
from typing import Optional, Tuple

BOP_PAPER = "Helwegen et al., NeurIPS 2019 (arXiv:1906.02107)"
BOP2ND_PAPER = "Suarez-Ramirez et al., CVPR 2021 workshops (arXiv:2104.05124)"
#: Where "A Bop and Beyond"'s figures were read: its code's README, not its text.
BOP2ND_README = "(as its code's README, github.com/CuauSuarez/Bop2ndOrder, prints it)"


@dataclasses.dataclass(frozen=True)
class Figure:
    """A paper's validation top-1 accuracy (a fraction) for one configuration."""

    model: str
    dataset: str
    hparams_set: str
    val_accuracy: float
    paper: str
    source: str  # where the paper prints it

    def citation(self) -> str:
        return f"{self.paper}, {self.source}"


FIGURES: Tuple[Figure, ...] = (
    Figure("binarynet", "cifar10", "bop_sec52", 0.913, BOP_PAPER, "section 5.2"),
    Figure("binarynet", "cifar10", "adam_sec52", 0.909, BOP_PAPER,
           "section 5.2, latent-weight baseline (Adam)"),
    Figure("binary_alexnet", "imagenet2012", "bop", 0.411, BOP_PAPER, "section 5.3, ImageNet table"),
    Figure("xnornet", "imagenet2012", "bop", 0.459, BOP_PAPER, "section 5.3, ImageNet table"),
    Figure("birealnet", "imagenet2012", "bop", 0.566, BOP_PAPER, "section 5.3, ImageNet table"),
    Figure("binarynet_batch", "cifar10", "bop2ndOrder_CIFAR", 0.919, BOP2ND_PAPER,
           f"section 5.2, biased {BOP2ND_README}"),
    Figure("binarynet_batch", "cifar10", "bop2ndOrder_unbiased_CIFAR", 0.914, BOP2ND_PAPER,
           f"section 5.2, bias-corrected {BOP2ND_README}"),
    Figure("xnornet_batch", "imagenet2012", "bop2ndOrder_ImageNet", 0.469, BOP2ND_PAPER,
           f"section 5.3 {BOP2ND_README}"),
    Figure("birealnet_batch", "imagenet2012", "bop2ndOrder_ImageNet", 0.572, BOP2ND_PAPER,
           f"section 5.3 {BOP2ND_README}"),
)


def dataset_name(dataset: str) -> str:
    """A data set's name as figures key it: a tensorflow-datasets name without its
    version (``cifar10:3.0.2`` -> ``cifar10``); an image folder by its path as given."""
    if os.sep in dataset or (os.altsep and os.altsep in dataset):
        return dataset
    return dataset.split(":", 1)[0]


def figure_for(model: str, dataset: str, hparams_set: str) -> Optional[Figure]:
    """The reported figure for a run of ``model`` on ``dataset`` with ``hparams_set``,
    or ``None`` where no paper reports one."""
    name = dataset_name(dataset)
    for figure in FIGURES:
        if (figure.model, figure.dataset, figure.hparams_set) == (model, name, hparams_set):
            return figure
    return None
