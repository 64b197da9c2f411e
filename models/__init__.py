"""Networks (StyleGAN2, DCGAN) and weight I/O for LatentBrush; imports neither `engine` nor `app`."""
from .config import ModelConfig, build_discriminator, build_generator, dcgan_config, small_stylegan2_config
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .loader import LoadedModel, bundled_names, load_generator, load_model, model_file
from .native import load_native, save_model
from .strict_load import CheckpointError
from .stylegan2 import Discriminator, Generator

save_generator = save_model

__all__ = ["CheckpointError", "DCGANDiscriminator", "DCGANGenerator", "Discriminator", "Generator",
           "LoadedModel", "ModelConfig", "build_discriminator", "build_generator", "bundled_names",
           "dcgan_config", "load_generator", "load_model", "load_native", "model_file", "save_generator",
           "save_model", "small_stylegan2_config"]
