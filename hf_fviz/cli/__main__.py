"""`python -m hf_fviz.cli` (and `torchrun -m hf_fviz.cli`): the same as the `hf-fviz` script."""

import sys

from . import main

sys.exit(main())
