"""`python -m connector.sandbox --dir DIR ...`: the same as `cpq2stripe sandbox`."""

import sys

from connector.sandbox.runner import main

sys.exit(main(sys.argv[1:], prog="python -m connector.sandbox"))
