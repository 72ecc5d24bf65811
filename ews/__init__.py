"""ews: an early-intervention system for police agencies.

Core package: settings, the agency data contract, the workspace store and the CLI.
"""

__version__ = "0.1.0"
