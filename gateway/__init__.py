"""session-gateway: Clerk authentication at the edge, in front of any web app."""

__version__ = "0.1.0"
