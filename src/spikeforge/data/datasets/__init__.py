"""Datasets over local files laid out as the original releases, plus the offline ``EmulatedNMNIST``.

Every dataset is a map-style ``torch.utils.data.Dataset`` of ``(events, label)`` —
:class:`~spikeforge.data.events.Events` — or ``(transform(events), label)``. Indexing lists files
and reads label files only; recordings are decoded on access. A missing or misshapen root raises
:class:`DatasetLayoutError` showing the expected layout and where the data is published; nothing
is downloaded at run time.
"""

from ._common import DatasetLayoutError, EventFolderDataset, split_per_class
from .asl_dvs import ASLDVS
from .audio import SHD, SSC, SpeechCommands
from .bullying10k import Bullying10K, load_object_npy
from .cifar10_dvs import CIFAR10DVS
from .dvs_gesture import DVS128Gesture
from .dvs_lip import DVSLip
from .emulated import EmulatedNMNIST
from .es_imagenet import ESImageNet
from .hardvs import HARDVS
from .nmnist import NMNIST, NCaltech101
from .prophesee import NCARS, NavGesture
from .registry import DATASETS, DataBundle, DataRequest, DatasetUnavailable, build_dataset, list_datasets
from .static import load_digits28, load_fashion_mnist, load_mnist5k, read_idx

__all__ = [
    "DatasetLayoutError", "EventFolderDataset", "split_per_class",
    "NMNIST", "NCaltech101", "DVS128Gesture", "CIFAR10DVS", "SHD", "SSC", "SpeechCommands",
    "ASLDVS", "DVSLip", "NCARS", "NavGesture", "ESImageNet", "HARDVS", "Bullying10K",
    "EmulatedNMNIST", "load_digits28", "load_mnist5k", "load_fashion_mnist", "read_idx",
    "load_object_npy", "DATASETS", "DataBundle", "DataRequest", "DatasetUnavailable", "build_dataset", "list_datasets",
]
