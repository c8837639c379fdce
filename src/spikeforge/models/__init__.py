"""The model zoo: a registry of spiking networks with the neuron injected.

    from spikeforge.models import create_model, list_models
    net = create_model("spikingformer_4_384", num_classes=100)          # [B, 3, 32, 32] -> [T, B, 100]
    tiny = create_model("sew_resnet_tiny", cnf="IAND")                  # [T, B, 2, 34, 34] -> [T, B, 10]

Families (one file each): ``vgg`` (``spiking_vgg11/16``), ``resnet`` (``spiking_resnet18/34``,
``sew_resnet18/34/50``), ``spikformer`` / ``spikingformer`` (CIFAR 4-384, ImageNet 8-384/512/768,
DVS 2-256), ``psn_nets`` (sequential-CIFAR nets with PSN / masked / sliding PSN / LIF), ``small``
(``spiking_cnn_tiny``, ``spiking_mlp_tiny`` for the demo and the training engine), ``spenser`` (the network a
SPENSER genotype describes: ``create_model("spenser", genotype=...)``); each family has a
``*_tiny`` variant that trains on a CPU. ``fx.trace`` traces any of them with neurons as leaves.
"""

from . import fx, psn_nets, resnet, small, spenser, spikformer, spikingformer, vgg
from .psn_nets import SequentialCSNN
from .registry import MODELS, SpikingClassifier, create_model, is_model, list_models, register_model
from .resnet import SpikingResNet
from .spenser import SpenserNet
from .spikformer import Spikformer
from .spikingformer import Spikingformer
from .vgg import SpikingVGG

__all__ = ["MODELS", "create_model", "list_models", "register_model", "is_model", "SpikingClassifier", "SpikingResNet",
           "SpikingVGG", "Spikformer", "Spikingformer", "SequentialCSNN", "SpenserNet", "fx", "vgg", "resnet",
           "spikformer", "spikingformer", "psn_nets", "small", "spenser"]
