"""IMTalker motion generator (flow-matching transformer + condition projections + sampler)."""

from models.generator.config import GeneratorConfig
from models.generator.generator import Conditions, FMGenerator

__all__ = ["Conditions", "FMGenerator", "GeneratorConfig"]
