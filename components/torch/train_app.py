"""The DDP train app's former module path, kept for compiled specs and pushed runs that name it
(``python -m components.torch.train_app``): the app lives in :mod:`components.torch.trainer`."""

import sys

from components.torch.trainer import *  # noqa: F403
from components.torch.trainer import main

if __name__ == "__main__":
    sys.exit(main())
