"""`python -m hf_fviz.bench speed|chunks|quality ...`: the same as `hf-fviz bench ...`."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
