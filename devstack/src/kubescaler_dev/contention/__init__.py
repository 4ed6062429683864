"""Contended workloads against the running system and the rules that judge them."""
