"""``python -m spikeforge`` is the ``spikeforge`` command."""

import sys

from .cli import main

sys.exit(main())
