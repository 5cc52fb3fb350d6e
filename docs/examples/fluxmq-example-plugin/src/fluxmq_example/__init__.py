"""An example FluxMQ plugin: a text protocol server and a connection counter."""
