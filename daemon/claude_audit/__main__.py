"""`python -m claude_audit` is the claude-audit command."""

import sys

from .cli import main

sys.exit(main())
