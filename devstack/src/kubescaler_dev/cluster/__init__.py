"""A one-node Kubernetes cluster of real parts on this machine: `kubescaler-dev cluster`."""
