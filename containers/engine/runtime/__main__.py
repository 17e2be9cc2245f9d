import sys

from containers.engine.runtime.cli import main

sys.exit(main())
