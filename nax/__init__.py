"""nax: neural architecture search accelerated by inductive transfer."""

__version__ = "0.1.0"
