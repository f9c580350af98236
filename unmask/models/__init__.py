"""The networks: stage 1 M-Seg, stage 2 FU-Net generator and patch discriminator, VGG19 features."""

from unmask.models.discriminator import PatchDiscriminator
from unmask.models.funet import Generator, murf
from unmask.models.mseg import MSeg
from unmask.models.vgg import VGG19Features

__all__ = ["MSeg", "Generator", "PatchDiscriminator", "VGG19Features", "murf"]
