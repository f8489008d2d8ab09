"""Capacity pools, the provider contract and registry, and the local E2B emulator."""
