"""``python -m cryofield`` (also ``torchrun ... -m cryofield train-vae ...``): the command line."""

import sys

from cryofield.cli.main import main

sys.exit(main())
