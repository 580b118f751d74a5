"""claude-audit: kernel-sourced audit log of every program Claude Code and its descendants execute."""

__version__ = "0.1.0"
