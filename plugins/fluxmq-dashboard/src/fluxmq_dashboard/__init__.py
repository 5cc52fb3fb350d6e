"""FluxMQ web console: a single-page app at ``/ui/`` on the HTTP listener."""

__version__ = "0.1.0"
