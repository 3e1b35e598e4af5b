"""Training recipes for :mod:`spikeforge.sw.qat` (QAT and its float reference): what a
training run is, separate from how it runs, so the CLI can offer them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["RECIPE_SIZES", "RECIPES", "SCHEDULES", "Recipe", "recipe_from_options"]

SCHEDULES = ("none", "cosine")


@dataclass(frozen=True)
class Recipe:
    """How a network is trained (the same for QAT and the float reference).

    Attributes
    ----------
    epochs : int
        Passes over the training set.
    lr : float
        Adam learning rate, in units of the weight range (a latent weight of ``1.0`` is
        ``w_max``).
    batch_size : int
        Samples per gradient step.
    schedule : str
        ``"none"`` (constant rate) or ``"cosine"`` (annealed to 0 over the epochs).
    count_scale : float
        Logits of the cross-entropy: ``count_scale * output spike counts``.
    desire_weight : float
        Weight of a hinge that puts the output counts where on-chip desire backpropagation
        leaves them alone: the label neuron at ``>= (1 - desire_out) * C*`` spikes, the
        others at ``<= desire_out * C*`` (one spike of slack each; configs with a
        ``[learning]`` section only; 0: none).
    margin_weight : float
        Weight of the hinge pushing the true class ``MARGIN`` spikes ahead (0: none).
    """

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    schedule: str = "none"
    count_scale: float = 0.5
    margin_weight: float = 0.0
    desire_weight: float = 0.0

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"recipe: epochs must be >= 0, batch_size >= 1 and lr > 0; got "
                             f"{self.epochs}, {self.batch_size}, {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe: schedule {self.schedule!r}; legal values are "
                             f"{list(SCHEDULES)}")

    @classmethod
    def named(cls, name: str) -> Recipe:
        """A base recipe by name: ``small``, ``medium`` or ``large`` (:data:`RECIPES`)."""
        if name not in RECIPES:
            raise ValueError(f"recipe {name!r}: legal names are {list(RECIPES)}")
        return RECIPES[name]

    @classmethod
    def for_training_set(cls, n_train: int) -> Recipe:
        """The base recipe for ``n_train`` training samples (:data:`RECIPE_SIZES`)."""
        for name, below in RECIPE_SIZES.items():
            if n_train < below:
                return RECIPES[name]
        return RECIPES["large"]


#: Base recipes, by training-set size: the fewer the gradient steps per epoch, the larger each
#: step must be. Measured side by side with the float reference (``bench/qat_gap.py``;
#: BENCHMARKS.md, "Offline QAT against a float SNN"): ``small`` for the 1,437 digits,
#: ``medium`` for the 8,000-image MNIST split, ``large`` for Fashion-MNIST's 60,000.
RECIPES = {
    "small": Recipe(epochs=20, lr=0.01, batch_size=64, schedule="cosine", margin_weight=0.1),
    "medium": Recipe(epochs=20, lr=3e-3, batch_size=64, schedule="cosine"),
    "large": Recipe(epochs=20, lr=2e-3, batch_size=128, schedule="cosine"),
}
#: A training set smaller than the number takes the recipe named.
RECIPE_SIZES = {"small": 5_000, "medium": 20_000}


def recipe_from_options(options, n_train: int) -> Recipe:
    """The recipe a command line asks for: base ``options.recipe`` (``"auto"``:
    :meth:`Recipe.for_training_set` of ``n_train``), with every field of :class:`Recipe` that
    ``options`` has and sets (not ``None``) replacing the base's."""
    base = (Recipe.for_training_set(n_train) if options.recipe == "auto"
            else Recipe.named(options.recipe))
    given = {f.name: getattr(options, f.name) for f in fields(Recipe)
             if getattr(options, f.name, None) is not None}
    return replace(base, **given)
