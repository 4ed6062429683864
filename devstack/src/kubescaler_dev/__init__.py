"""The local system: backing services and kubescaler's own processes on 127.0.0.1."""
