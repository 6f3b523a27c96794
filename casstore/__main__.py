import sys

from casstore.cli import main

sys.exit(main())
