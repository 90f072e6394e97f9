"""Shared I/O adapters over the core contracts: Redis repositories and RabbitMQ setup.

The core (``recsys_core``) stays pure; every service uses these adapters so the key layout and the queue
declaration are written once.
"""
