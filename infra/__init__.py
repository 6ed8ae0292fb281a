"""Running the exchange locally: the stack launcher, emulators and seed data.

Kept free of imports so that ``python -m infra.local_stack`` runs without side effects.
"""
