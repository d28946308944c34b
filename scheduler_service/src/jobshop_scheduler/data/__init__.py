"""Production data: settings, MariaDB ingestion into a snapshot, and the snapshot's integrity rules.

Sits beside the service, above the domain: it builds ``domain.Problem`` objects from database
rows and writes them with the domain codec, and nothing in the domain or the server imports it.
"""
